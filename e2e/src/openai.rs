//! An OpenAI-compatible chat-completions server on loopback: it speaks the
//! `POST /v1/chat/completions` protocol (bearer key, `response_format` with a
//! JSON schema, a `chat.completion` answer) and answers with what the test's
//! `answer` function makes of the user message. Every request is kept.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

type Answer = Arc<dyn Fn(&str) -> String + Send + Sync>;

#[derive(Clone)]
struct Shared {
    key: String,
    answer: Answer,
    requests: Arc<Mutex<Vec<Value>>>,
}

/// The running server. Dropping it stops it.
pub struct ChatCompletionsServer {
    url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ChatCompletionsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatCompletionsServer")
            .field("url", &self.url)
            .finish()
    }
}

impl Drop for ChatCompletionsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ChatCompletionsServer {
    /// Accepts `Bearer <key>`; `answer` turns the user message into the assistant's content.
    pub async fn start(key: &str, answer: impl Fn(&str) -> String + Send + Sync + 'static) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1", listener.local_addr()?);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            key: key.into(),
            answer: Arc::new(answer),
            requests: requests.clone(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, requests, task })
    }

    /// Base URL, as given to `--openai-base-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request body received, with the authorization header under `_authorization`.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().expect("not poisoned").clone()
    }
}

fn api_error(status: StatusCode, message: &str, code: &str) -> Response {
    let body =
        json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}});
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn complete(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut request {
        map.insert("_authorization".into(), json!(authorization));
    }
    shared
        .requests
        .lock()
        .expect("not poisoned")
        .push(request.clone());
    if authorization.as_deref() != Some(&format!("Bearer {}", shared.key)) {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided.",
            "invalid_api_key",
        );
    }
    let format = &request["response_format"];
    if format["type"] != "json_schema" || !format["json_schema"]["schema"].is_object() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "response_format must be a json_schema",
            "invalid_value",
        );
    }
    let Some(user) = request["messages"]
        .as_array()
        .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
    else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "messages must end with a user message",
            "invalid_value",
        );
    };
    let content = (shared.answer)(user);
    let answer = json!({
        "id": "chatcmpl-winky-e2e",
        "object": "chat.completion",
        "created": jiff::Timestamp::now().as_second(),
        "model": request["model"],
        "system_fingerprint": "fp_winky_e2e",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}
