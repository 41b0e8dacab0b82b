//! `okta-sandbox --token T [--listen 127.0.0.1:0] [...]`: prints one JSON line with its URL
//! on stdout, then serves until killed. Everything else goes to stderr; the token never does.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use okta_sandbox::Config;

const USAGE: &str = "usage: okta-sandbox --token TOKEN [--listen 127.0.0.1:0] \
[--sms-cooldown-ms 30000] [--call-cooldown-ms 30000] [--email-cooldown-ms 5000] \
[--rate-limit 600] [--slow-ms 30000] [--verbose]
The token may also come from OKTA_SANDBOX_TOKEN.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let token = std::env::var("OKTA_SANDBOX_TOKEN").ok();
    let (listen, config) = match parse_args(&args, token) {
        Ok(parsed) => parsed,
        Err(msg) => {
            eprintln!("okta-sandbox: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result: std::io::Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", okta_sandbox::listening_line(&url))?;
        stdout.flush()?;
        drop(stdout);
        eprintln!("okta-sandbox: listening on {url}");
        okta_sandbox::serve(listener, config).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("okta-sandbox: {err}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: &[String], env_token: Option<String>) -> Result<(SocketAddr, Config), String> {
    let mut config = Config::new(env_token.unwrap_or_default());
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--verbose" {
            config.verbose = true;
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let value = match inline.or_else(|| args.next().cloned()) {
            Some(value) => value,
            None => return Err(format!("{flag} needs a value")),
        };
        let millis = || {
            value
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{flag}: not a number of milliseconds"))
        };
        match flag {
            "--listen" => {
                listen = value
                    .parse()
                    .map_err(|_| format!("--listen: not an address: {value}"))?;
            }
            "--token" => config.token = value.clone(),
            "--sms-cooldown-ms" => config.sms_cooldown = millis()?,
            "--call-cooldown-ms" => config.call_cooldown = millis()?,
            "--email-cooldown-ms" => config.email_cooldown = millis()?,
            "--slow-ms" => config.slow = millis()?,
            "--rate-limit" => {
                config.rate_limit = value
                    .parse()
                    .map_err(|_| "--rate-limit: not a number".to_owned())?;
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if !listen.ip().is_loopback() {
        return Err(format!("--listen: {listen} is not a loopback address"));
    }
    if config.token.is_empty() {
        return Err("--token is required".into());
    }
    if !config.token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("--token: only visible ASCII characters".into());
    }
    Ok((listen, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(SocketAddr, Config), String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse_args(&args, None)
    }

    #[test]
    fn flags_and_defaults() {
        let (addr, c) = parse(&[
            "--token",
            "t0k",
            "--sms-cooldown-ms=100",
            "--rate-limit",
            "5",
        ])
        .unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:0");
        assert_eq!(c.token, "t0k");
        assert_eq!(c.sms_cooldown, Duration::from_millis(100));
        assert_eq!(c.call_cooldown, Duration::from_secs(30));
        assert_eq!(c.email_cooldown, Duration::from_secs(5));
        assert_eq!(c.slow, Duration::from_secs(30));
        assert_eq!(c.rate_limit, 5);
        let (addr, _) = parse(&["--token", "t", "--listen", "[::1]:8080"]).unwrap();
        assert_eq!(addr.to_string(), "[::1]:8080");
    }

    #[test]
    fn refuses_bad_arguments() {
        for args in [
            &["--listen", "127.0.0.1:0"][..],
            &["--token", "t", "--listen", "0.0.0.0:0"],
            &["--token", "t", "--listen", "192.168.1.2:80"],
            &["--token", "t", "--slow-ms", "soon"],
            &["--token", "t", "--bogus", "1"],
            &["--token"],
            &["--token", "a b"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        let args = vec!["--rate-limit".to_owned(), "3".to_owned()];
        assert!(parse_args(&args, Some("from-env".into())).is_ok());
    }

    #[test]
    fn config_debug_hides_the_token() {
        let (_, c) = parse(&["--token", "very-secret"]).unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
