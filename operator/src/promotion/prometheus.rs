//! Instant queries against Prometheus' HTTP API, for the SLO gates: the
//! answer parsed by `winky_promotion::slo`, or `Reading::Unavailable` when
//! nobody answers in time — which makes a gate wait, never pass.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use winky_promotion::slo::{self, Queries, Reading, Readings};

/// How long one query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The readings of `queries` from the Prometheus at `base` (`http://…`).
pub async fn readings(base: &str, queries: &Queries) -> Readings {
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut readings = Readings::default();
    for (key, promql) in queries.iter() {
        let reading = instant_query(&client, base, promql).await;
        if let Some(slot) = readings.slot(key) {
            *slot = reading;
        }
    }
    readings
}

/// One instant query: the parsed answer, or why there is none.
pub async fn instant_query(
    client: &Client<HttpConnector, Empty<Bytes>>,
    base: &str,
    promql: &str,
) -> Reading {
    let url = format!(
        "{}/api/v1/query?query={}",
        base.trim_end_matches('/'),
        form_encode(promql)
    );
    // What is said of the URL (gate evidence, Events) never carries credentials.
    let base = crate::gitsource::fetch::strip_userinfo(base);
    let base = base.as_str();
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return Reading::Unavailable(format!("not a URL: {base}"));
    };
    if uri.scheme_str() != Some("http") {
        return Reading::Unavailable(format!(
            "only http:// Prometheus URLs are supported yet, not {base}"
        ));
    }
    let fetch = async {
        let response = client.get(uri).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(QUERY_TIMEOUT, fetch).await {
        Err(_) => Reading::Unavailable(format!(
            "Prometheus at {base} did not answer within {QUERY_TIMEOUT:?}"
        )),
        Ok(Err(e)) => Reading::Unavailable(format!("Prometheus at {base} is unreachable: {e}")),
        Ok(Ok((status, body))) => match slo::parse_response(&body) {
            Reading::Unavailable(reason) if status != 200 => {
                Reading::Unavailable(format!("HTTP {status}: {reason}"))
            }
            reading => reading,
        },
    }
}

/// `application/x-www-form-urlencoded`, spaces as `%20`: everything but the
/// unreserved characters percent-encoded.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn promql_is_encoded_for_a_query_string() {
        assert_eq!(super::form_encode("up{app=\"a b\"}"), "up%7Bapp%3D%22a%20b%22%7D");
    }

    #[tokio::test]
    async fn nobody_answering_is_unavailable_never_a_value() {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let reading = super::instant_query(&client, &format!("http://127.0.0.1:{port}"), "up").await;
        assert!(
            matches!(reading, winky_promotion::slo::Reading::Unavailable(_)),
            "{reading:?}"
        );
        let https = super::instant_query(&client, "https://user:secret@prometheus.example", "up").await;
        assert!(!format!("{https:?}").contains("secret"), "{https:?}");
        assert!(matches!(https, winky_promotion::slo::Reading::Unavailable(m) if m.contains("only http://")));
    }
}
