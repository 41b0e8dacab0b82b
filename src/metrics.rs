//! CloudWatch metrics as Embedded Metric Format (EMF) records: one JSON line per request on
//! stdout. Lambda hands stdout to CloudWatch Logs, which turns every line carrying an `_aws`
//! key into metric data, so the function needs no `cloudwatch:PutMetricData` permission and
//! makes no extra call on the request path.

use std::fmt;
use std::io::Write;

use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::domain::E164;

/// The one metric: a count of requests, by outcome and, for a sent code, by factor type
/// (the channel: sms, call, email) and, for a sent sms or call, by country.
const METRIC_NAME: &str = "Requests";

type Sink = Box<dyn Fn(&str) + Send + Sync>;

/// Where EMF records go: stdout in Lambda, a buffer in tests.
pub struct Metrics {
    namespace: String,
    sink: Sink,
}

impl Metrics {
    /// Records to stdout.
    pub fn stdout(namespace: impl Into<String>) -> Self {
        Self::to_sink(namespace, write_line_to_stdout)
    }

    /// Records to `sink` (tests): each record is handed over as one line without the newline.
    pub fn to_sink(
        namespace: impl Into<String>,
        sink: impl Fn(&str) + Send + Sync + 'static,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            sink: Box::new(sink),
        }
    }

    /// Writes one record for one request: `outcome` is "sent", "activated" or a problem
    /// code; `dimensions` the sent code's own (`factorType`, and `country` for a phone).
    pub fn record(&self, outcome: &str, dimensions: &[(&str, &str)]) {
        let line = emf_record(&self.namespace, outcome, dimensions, now_ms());
        (self.sink)(&line);
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// One `write_all` on a locked stdout, so a record is never interleaved with a log line
/// written by another thread. Errors are ignored: a metric must never fail a request.
fn write_line_to_stdout(line: &str) {
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    let _ = std::io::stdout().lock().write_all(buf.as_bytes());
}

/// The record itself, as a JSON string (one line), for a given time in epoch milliseconds.
///
/// `Requests` (Count, 1) by `outcome`; each of `dimensions` (a sent code's `factorType`
/// and `country`) is a further, separate dimension set, so CloudWatch keeps one metric per
/// outcome, one per factor type and one per country rather than one per combination.
pub fn emf_record(
    namespace: &str,
    outcome: &str,
    dimensions: &[(&str, &str)],
    timestamp_ms: u64,
) -> String {
    let sets: Vec<Value> = std::iter::once(json!(["outcome"]))
        .chain(dimensions.iter().map(|(name, _)| json!([name])))
        .collect();
    let mut record = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": sets,
                "Metrics": [{ "Name": METRIC_NAME, "Unit": "Count" }],
            }],
        },
        "outcome": outcome,
        METRIC_NAME: 1,
    });
    if let Value::Object(members) = &mut record {
        for (name, value) in dimensions {
            members.insert((*name).to_owned(), Value::from(*value));
        }
    }
    // `Value`'s Display is compact JSON on one line and cannot fail.
    record.to_string()
}

/// The E.164 country calling code of a phone number ("1", "44", "353", ...), or "unknown".
///
/// No phone-metadata crate is needed: ITU-T E.164 country codes are 1 to 3 digits and
/// prefix-free (no assigned code is the start of another), so the first of the number's
/// first 1, 2 or 3 digits found in `COUNTRY_CODES` is its country code, and nothing else
/// can be. The list changes rarely (the newest code, 383 for Kosovo, dates from 2016), so a
/// table here costs less than a dependency carrying every country's numbering plan; a code
/// missing from it only makes its numbers count as "unknown". NANP countries (Canada, Jamaica,
/// ...) share "1" and are not told apart.
pub fn country_calling_code(phone: &E164) -> &'static str {
    let number = phone.expose();
    let digits = number.strip_prefix('+').unwrap_or(number);
    (1..=3)
        .filter_map(|len| digits.get(..len))
        .find_map(|prefix| COUNTRY_CODES.iter().find(|code| **code == prefix))
        .copied()
        .unwrap_or("unknown")
}

/// Every country calling code assigned for use in ITU-T E.164, by zone: the keys of
/// libphonenumber's country-code-to-region map (as generated into python-phonenumbers'
/// `_COUNTRY_CODE_TO_REGION_CODE`), which follows the ITU list of assigned codes. That
/// includes the shared codes of the international networks and global services (800, 808,
/// 870, 878, 881, 882, 883, 888, 979) and leaves out codes with no numbers behind them
/// (379, reserved for the Vatican, which uses +39; the withdrawn 388 and 991).
const COUNTRY_CODES: [&str; 215] = [
    // Zone 1 (NANP) and zone 7.
    "1", "7", //
    // Zone 2: Africa and some Atlantic and Indian Ocean islands.
    "20", "27", //
    "211", "212", "213", "216", "218", //
    "220", "221", "222", "223", "224", "225", "226", "227", "228", "229", //
    "230", "231", "232", "233", "234", "235", "236", "237", "238", "239", //
    "240", "241", "242", "243", "244", "245", "246", "247", "248", "249", //
    "250", "251", "252", "253", "254", "255", "256", "257", "258", //
    "260", "261", "262", "263", "264", "265", "266", "267", "268", "269", //
    "290", "291", "297", "298", "299", //
    // Zones 3 and 4: Europe.
    "30", "31", "32", "33", "34", "36", "39", //
    "350", "351", "352", "353", "354", "355", "356", "357", "358", "359", //
    "370", "371", "372", "373", "374", "375", "376", "377", "378", //
    "380", "381", "382", "383", "385", "386", "387", "389", //
    "40", "41", "43", "44", "45", "46", "47", "48", "49", //
    "420", "421", "423", //
    // Zone 5: South and Central America.
    "51", "52", "53", "54", "55", "56", "57", "58", //
    "500", "501", "502", "503", "504", "505", "506", "507", "508", "509", //
    "590", "591", "592", "593", "594", "595", "596", "597", "598", "599", //
    // Zone 6: Southeast Asia and Oceania.
    "60", "61", "62", "63", "64", "65", "66", //
    "670", "672", "673", "674", "675", "676", "677", "678", "679", //
    "680", "681", "682", "683", "685", "686", "687", "688", "689", //
    "690", "691", "692", //
    // Zone 8: East Asia and international networks and global services.
    "81", "82", "84", "86", //
    "800", "808", //
    "850", "852", "853", "855", "856", //
    "870", "878", //
    "880", "881", "882", "883", "886", "888", //
    // Zone 9: West, Central and South Asia, and global services.
    "90", "91", "92", "93", "94", "95", "98", //
    "960", "961", "962", "963", "964", "965", "966", "967", "968", //
    "970", "971", "972", "973", "974", "975", "976", "977", "979", //
    "992", "993", "994", "995", "996", "998", //
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn code(raw: &str) -> &'static str {
        let phone = E164::parse(raw).expect("a valid E.164 number");
        country_calling_code(&phone)
    }

    #[test]
    fn country_calling_codes() {
        for (raw, expected) in [
            ("+15554151337", "1"),
            ("+18765550100", "1"), // Jamaica is inside NANP's +1
            ("+79161234567", "7"),
            ("+447700900123", "44"),
            ("+4930123456", "49"),
            ("+353861234567", "353"),
            ("+212612345678", "212"),
            ("+420123456789", "420"),
            ("+8821234567", "882"),
            ("+97150123456", "971"),
            ("+38344123456", "383"),
            ("+2812345678", "unknown"),  // 28 is spare
            ("+9991234567", "unknown"),  // 999 is spare
            ("+42212345678", "unknown"), // 422 is spare
            ("+37912345678", "unknown"), // 379 has no numbers
            ("+12", "1"),                // shortest valid number
        ] {
            assert_eq!(code(raw), expected, "{raw}");
        }
    }

    #[test]
    fn every_code_in_the_table_is_found() {
        for cc in COUNTRY_CODES {
            let raw = format!("+{cc}{}", "5".repeat(12 - cc.len()));
            assert_eq!(code(&raw), cc, "{raw}");
        }
    }

    #[test]
    fn table_is_prefix_free_and_without_duplicates() {
        let unique: HashSet<_> = COUNTRY_CODES.iter().collect();
        assert_eq!(unique.len(), COUNTRY_CODES.len(), "duplicates");
        for a in COUNTRY_CODES {
            assert!(
                (1..=3).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_digit()),
                "{a}"
            );
            assert!(!a.starts_with('0'), "{a}");
            for b in COUNTRY_CODES {
                assert!(a == b || !b.starts_with(a), "{a} is a prefix of {b}");
            }
        }
    }

    #[test]
    fn record_without_country() {
        let line = emf_record(
            "okta-resend/test",
            "resend_too_soon",
            &[],
            1_700_000_000_123,
        );
        let parsed = one_json_line(&line);
        assert_eq!(
            parsed,
            json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_123_u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "okta-resend/test",
                        "Dimensions": [["outcome"]],
                        "Metrics": [{"Name": "Requests", "Unit": "Count"}]
                    }]
                },
                "outcome": "resend_too_soon",
                "Requests": 1
            })
        );
    }

    /// The record is one line of JSON.
    fn one_json_line(line: &str) -> Value {
        assert!(!line.contains('\n'));
        serde_json::from_str(line).expect("JSON")
    }

    #[test]
    fn a_sent_code_is_also_counted_by_factor_type_and_country() {
        let line = emf_record(
            "okta-resend/test",
            "sent",
            &[("factorType", "sms"), ("country", "44")],
            42,
        );
        let parsed = one_json_line(&line);
        assert_eq!(
            parsed,
            json!({
                "_aws": {
                    "Timestamp": 42,
                    "CloudWatchMetrics": [{
                        "Namespace": "okta-resend/test",
                        "Dimensions": [["outcome"], ["factorType"], ["country"]],
                        "Metrics": [{"Name": "Requests", "Unit": "Count"}]
                    }]
                },
                "outcome": "sent",
                "factorType": "sms",
                "country": "44",
                "Requests": 1
            })
        );
    }

    #[test]
    fn sink_gets_one_line_per_record() {
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&lines);
        let metrics = Metrics::to_sink("ns", move |line: &str| {
            sink.lock().expect("not poisoned").push(line.to_owned());
        });
        let before = now_ms();
        metrics.record("sent", &[("factorType", "sms"), ("country", "1")]);
        metrics.record("daily_limit_reached", &[]);
        let after = now_ms();

        let lines = lines.lock().expect("not poisoned");
        assert_eq!(lines.len(), 2);
        let sent: &[(&str, &str)] = &[("factorType", "sms"), ("country", "1")];
        for (line, outcome, dimensions) in [
            (&lines[0], "sent", sent),
            (&lines[1], "daily_limit_reached", &[]),
        ] {
            assert!(!line.contains('\n'), "{line}");
            let parsed: Value = serde_json::from_str(line).expect("JSON");
            let ts = parsed["_aws"]["Timestamp"].as_u64().expect("a timestamp");
            assert!((before..=after).contains(&ts), "{ts}");
            assert_eq!(*line, emf_record("ns", outcome, dimensions, ts));
        }
        assert!(format!("{metrics:?}").contains("\"ns\""));
    }

    #[test]
    fn stdout_constructor_builds() {
        let metrics = Metrics::stdout(String::from("okta-resend/test"));
        assert_eq!(metrics.namespace, "okta-resend/test");
    }
}
