//! A planner backed by any OpenAI-compatible chat-completions endpoint.
//!
//! The request asks for JSON-schema structured output (`response_format:
//! {type: json_schema, strict: true}`) with the schema of [`Plan`], so the
//! answer is parsed, not scraped; it is then validated like any other plan.
//! Only the redacted prompt is sent. The API key is held in memory only and
//! never printed, logged or written.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::plan::Plan;
use crate::planner::{PlanError, PlanFuture, PlanRequest, Planner};
use crate::redact::Redactor;

const SYSTEM_PROMPT: &str = "You plan small applications for Winky, a platform that deploys them on Kubernetes. \
Answer with a plan that follows the JSON schema exactly. Use lowercase DNS labels for the app, bucket and \
function names, lowercase collection names, camelCase field names. Every collection names its access pattern; \
collections with access owner or owner-read-only have an `owner` string field, members has `owner` and \
`members`, member-posts has `author` and `members`. Functions have exactly one trigger; give egress only \
when a function must reach the internet, with the reason.";

/// Largest answer accepted from the provider.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Where the provider is and how to authenticate.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Base URL up to and including the API version (`https://api.openai.com/v1`).
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct OpenAiPlanner {
    config: OpenAiConfig,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for OpenAiPlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiPlanner")
            .field("config", &self.config)
            .finish()
    }
}

impl OpenAiPlanner {
    pub fn new(config: OpenAiConfig) -> Result<Self, PlanError> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| PlanError::Provider(format!("cannot load the system's TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { config, client })
    }

    /// The request body; public so tests can check what is sent.
    pub fn request_body(&self, request: &PlanRequest) -> Value {
        json!({
            "model": self.config.model,
            "seed": request.seed,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": request.prompt},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "winky_plan", "strict": true, "schema": Plan::json_schema()},
            },
        })
    }

    async fn call(&self, request: &PlanRequest) -> Result<Plan, PlanError> {
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let body = serde_json::to_vec(&self.request_body(request)).expect("a JSON value serializes");
        let mut http = Request::post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header("user-agent", concat!("winky/", env!("CARGO_PKG_VERSION")));
        if let Some(key) = &self.config.api_key {
            http = http.header("authorization", format!("Bearer {key}"));
        }
        let http = http
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| PlanError::Provider(format!("invalid provider URL {url:?}: {e}")))?;
        let response = tokio::time::timeout(self.config.timeout, self.client.request(http))
            .await
            .map_err(|_| {
                PlanError::Provider(format!("no answer from {url} within {:?}", self.config.timeout))
            })?
            .map_err(|e| PlanError::Provider(format!("cannot reach {url}: {e}")))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| PlanError::Provider(format!("reading the answer of {url}: {e}")))?
            .to_bytes();
        if !status.is_success() {
            // The provider's message helps; it is capped and redacted in case it echoes a key.
            let text = String::from_utf8_lossy(&bytes);
            let text: String = text.chars().take(300).collect();
            return Err(PlanError::Provider(format!(
                "{url} answered {status}: {}",
                Redactor::builtin().redact(&text).text
            )));
        }
        parse_completion(&bytes)
    }
}

/// The plan inside a chat-completions answer.
pub fn parse_completion(bytes: &[u8]) -> Result<Plan, PlanError> {
    let answer: Value = serde_json::from_slice(bytes).map_err(|e| PlanError::Malformed(e.to_string()))?;
    let message = answer
        .pointer("/choices/0/message")
        .ok_or_else(|| PlanError::Malformed("no choices[0].message".into()))?;
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        return Err(PlanError::Provider(format!("the model refused: {refusal}")));
    }
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| PlanError::Malformed("choices[0].message.content is not a string".into()))?;
    let plan: Plan = serde_json::from_str(content).map_err(|e| PlanError::Malformed(e.to_string()))?;
    plan.validate()?;
    Ok(plan)
}

impl Planner for OpenAiPlanner {
    fn name(&self) -> &str {
        "openai"
    }

    fn plan<'a>(&'a self, request: &'a PlanRequest) -> PlanFuture<'a> {
        Box::pin(self.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::offline;

    #[test]
    fn a_completion_with_a_plan_parses() {
        let plan = offline::plan("A notes app with tags");
        let answer = json!({"choices": [{"message": {"role": "assistant",
            "content": serde_json::to_string(&plan).unwrap()}}]});
        assert_eq!(parse_completion(answer.to_string().as_bytes()).unwrap(), plan);
    }

    #[test]
    fn refusals_and_invalid_plans_are_errors() {
        let refusal = json!({"choices": [{"message": {"refusal": "no", "content": null}}]});
        assert!(matches!(
            parse_completion(refusal.to_string().as_bytes()),
            Err(PlanError::Provider(_))
        ));
        let mut plan = offline::plan("A notes app");
        plan.app = "Not A Label".into();
        let bad = json!({"choices": [{"message": {"content": serde_json::to_string(&plan).unwrap()}}]});
        assert!(matches!(
            parse_completion(bad.to_string().as_bytes()),
            Err(PlanError::Invalid(_))
        ));
        assert!(matches!(parse_completion(b"{}"), Err(PlanError::Malformed(_))));
    }

    #[test]
    fn the_schema_is_strict() {
        let schema = Plan::json_schema();
        assert_eq!(schema["additionalProperties"], json!(false));
        let required = schema["required"].as_array().unwrap();
        assert_eq!(required.len(), schema["properties"].as_object().unwrap().len());
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let config = OpenAiConfig {
            base_url: "http://127.0.0.1:1/v1".into(),
            model: "m".into(),
            api_key: Some("sk-very-secret".into()),
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{config:?}").contains("very-secret"));
    }
}
