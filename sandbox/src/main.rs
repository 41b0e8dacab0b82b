//! `okta-sandbox --token T [--listen 127.0.0.1:0] [...]`: prints one JSON line with its URL
//! on stdout, then serves until killed. Everything else goes to stderr; the token never does.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use okta_sandbox::{Config, OAuthApp, PublicKey};

const USAGE: &str = "usage: okta-sandbox --token TOKEN [--listen 127.0.0.1:0] \
[--sms-cooldown-ms 30000] [--call-cooldown-ms 30000] [--email-cooldown-ms 5000] \
[--rate-limit 600] [--slow-ms 30000] [--verbose]
  [--oauth-client-id ID --oauth-public-key-file PATH [--oauth-key-id KID] ... \
[--require-dpop] [--oauth-token-ttl-s 3600]]
The token may also come from OKTA_SANDBOX_TOKEN. Each --oauth-key-id names the key file \
given just before it.";

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
    let mut oauth = OAuthFlags::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--verbose" {
            config.verbose = true;
            continue;
        }
        if arg == "--require-dpop" {
            oauth.require_dpop = true;
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
            "--oauth-client-id" => oauth.client_id = Some(value),
            "--oauth-public-key-file" => {
                let pem = std::fs::read_to_string(&value)
                    .map_err(|err| format!("--oauth-public-key-file {value}: {err}"))?;
                let key = PublicKey::from_pem(&pem)
                    .map_err(|err| format!("--oauth-public-key-file {value}: {err}"))?;
                oauth.keys.push((None, key));
            }
            "--oauth-key-id" => match oauth.keys.last_mut() {
                Some((kid @ None, _)) if !value.is_empty() => *kid = Some(value),
                _ => {
                    return Err(
                        "--oauth-key-id: must follow the --oauth-public-key-file it names".into(),
                    );
                }
            },
            "--oauth-token-ttl-s" => {
                let secs = value
                    .parse::<u64>()
                    .ok()
                    .filter(|secs| *secs > 0)
                    .ok_or("--oauth-token-ttl-s: not a positive number of seconds")?;
                oauth.token_lifetime = Some(Duration::from_secs(secs));
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    config.oauth = oauth.into_app()?;
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

/// The `--oauth-*` flags and `--require-dpop`, checked together once all are read.
#[derive(Default)]
struct OAuthFlags {
    client_id: Option<String>,
    keys: Vec<(Option<String>, PublicKey)>,
    require_dpop: bool,
    token_lifetime: Option<Duration>,
}

impl OAuthFlags {
    fn into_app(self) -> Result<Option<OAuthApp>, String> {
        let Some(client_id) = self.client_id else {
            if !self.keys.is_empty() || self.require_dpop || self.token_lifetime.is_some() {
                return Err("the OAuth flags need --oauth-client-id".into());
            }
            return Ok(None);
        };
        if client_id.is_empty() || !client_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("--oauth-client-id: only visible ASCII characters".into());
        }
        if self.keys.is_empty() {
            return Err("--oauth-client-id needs at least one --oauth-public-key-file".into());
        }
        let mut app = OAuthApp::new(client_id, self.keys);
        app.require_dpop = self.require_dpop;
        if let Some(lifetime) = self.token_lifetime {
            app.token_lifetime = lifetime;
        }
        Ok(Some(app))
    }
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

    const RSA_SPKI: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/test-only-rsa-2048.pub.pem"
    );
    const EC_SPKI: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/test-only-ec-p256.pub.pem"
    );

    #[test]
    fn oauth_flags() {
        let (_, c) = parse(&["--token", "t"]).unwrap();
        assert!(c.oauth.is_none(), "API token only by default");
        let (_, c) = parse(&[
            "--token",
            "t",
            "--oauth-client-id",
            "0oa1client",
            "--oauth-public-key-file",
            RSA_SPKI,
            "--oauth-key-id",
            "rsa-1",
            "--oauth-public-key-file",
            EC_SPKI,
            "--require-dpop",
            "--oauth-token-ttl-s=60",
        ])
        .unwrap();
        let app = c.oauth.unwrap();
        assert_eq!(app.client_id, "0oa1client");
        let kids: Vec<_> = app
            .public_keys
            .iter()
            .map(|(kid, key)| (kid.as_deref(), key.alg()))
            .collect();
        assert_eq!(kids, [(Some("rsa-1"), "RS256"), (None, "ES256")]);
        assert!(app.require_dpop);
        assert_eq!(app.token_lifetime, Duration::from_secs(60));
        let (_, c) = parse(&[
            "--token",
            "t",
            "--oauth-client-id",
            "c",
            "--oauth-public-key-file",
            EC_SPKI,
        ])
        .unwrap();
        let app = c.oauth.unwrap();
        assert!(!app.require_dpop);
        assert_eq!(app.token_lifetime, Duration::from_secs(3600));
    }

    #[test]
    fn refuses_bad_oauth_flags() {
        for args in [
            &["--token", "t", "--oauth-public-key-file", EC_SPKI][..],
            &["--token", "t", "--require-dpop"],
            &["--token", "t", "--oauth-client-id", "c"],
            &[
                "--token",
                "t",
                "--oauth-client-id",
                "c",
                "--oauth-public-key-file",
                "/nonexistent.pem",
            ],
            &[
                "--token",
                "t",
                "--oauth-client-id",
                "c",
                "--oauth-public-key-file",
                "Cargo.toml",
            ],
            &[
                "--token",
                "t",
                "--oauth-client-id",
                "c",
                "--oauth-key-id",
                "k",
                "--oauth-public-key-file",
                EC_SPKI,
            ],
            &[
                "--token",
                "t",
                "--oauth-client-id",
                "c",
                "--oauth-public-key-file",
                EC_SPKI,
                "--oauth-key-id",
                "k",
                "--oauth-key-id",
                "j",
            ],
            &[
                "--token",
                "t",
                "--oauth-client-id",
                "c",
                "--oauth-public-key-file",
                EC_SPKI,
                "--oauth-token-ttl-s",
                "0",
            ],
            &[
                "--token",
                "t",
                "--oauth-client-id",
                "a b",
                "--oauth-public-key-file",
                EC_SPKI,
            ],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn config_debug_hides_the_token() {
        let (_, c) = parse(&["--token", "very-secret"]).unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
