//! The part of the Lambda Runtime API a function uses (`next`, `response`, `init/error`,
//! `error`), served on 127.0.0.1, so tests can run the built binary the way Lambda does:
//! several of them at once, each an instance, fed events when the test says.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::{Mutex, Notify, mpsc};

/// One instance's Runtime API: events go in with [`RuntimeApi::invoke`], answers come back.
pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    events: Mutex<mpsc::Receiver<(String, String)>>,
    sender: mpsc::Sender<(String, String)>,
    answers: Mutex<HashMap<String, serde_json::Value>>,
    answered: Notify,
    /// How many times the function asked for its next event: 1 once init is done.
    polls: std::sync::atomic::AtomicUsize,
    polled: Notify,
    init_error: Mutex<Option<String>>,
    /// The invocation deadline given with each event.
    deadline: Duration,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    /// Serves a Runtime API whose invocations each get `deadline` from the moment they
    /// are handed out.
    pub async fn start(deadline: Duration) -> Self {
        let (sender, receiver) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            events: Mutex::new(receiver),
            sender,
            answers: Mutex::new(HashMap::new()),
            answered: Notify::new(),
            polls: std::sync::atomic::AtomicUsize::new(0),
            polled: Notify::new(),
            init_error: Mutex::new(None),
            deadline,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            shared,
            task,
        }
    }

    /// Waits until the function has finished its init and asks for an event (or panics
    /// with its init error).
    pub async fn wait_ready(&self, within: Duration) {
        let ready = async {
            while self.shared.polls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                let polled = self.shared.polled.notified();
                if self.shared.polls.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                    break;
                }
                polled.await;
            }
        };
        if tokio::time::timeout(within, ready).await.is_err() {
            panic!(
                "the function did not ask for an event within {within:?}; init error: {:?}",
                self.shared.init_error.lock().await
            );
        }
    }

    /// Queues `event` (API Gateway JSON) and returns its request id.
    pub async fn queue(&self, request_id: &str, event: String) {
        self.shared
            .sender
            .send((request_id.to_owned(), event))
            .await
            .unwrap();
    }

    /// The function's answer to `request_id`.
    pub async fn answer(&self, request_id: &str, within: Duration) -> serde_json::Value {
        let wait = async {
            loop {
                let answered = self.shared.answered.notified();
                if let Some(answer) = self.shared.answers.lock().await.remove(request_id) {
                    return answer;
                }
                answered.await;
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .unwrap_or_else(|_| panic!("no answer to {request_id} within {within:?}"))
    }

    /// Sends `event` and waits for the answer.
    pub async fn invoke(&self, request_id: &str, event: String) -> serde_json::Value {
        self.queue(request_id, event).await;
        self.answer(request_id, Duration::from_secs(30)).await
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared
        .polls
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    shared.polled.notify_waiters();
    let (request_id, event) = shared
        .events
        .lock()
        .await
        .recv()
        .await
        .expect("the test keeps the sender");
    let deadline = std::time::SystemTime::now() + shared.deadline;
    let deadline_ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    };
    set("lambda-runtime-aws-request-id", request_id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:okta-resend".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".into(),
    );
    set("content-type", "application/json".into());
    (headers, event)
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let answer = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    shared.answers.lock().await.insert(id, answer);
    shared.answered.notify_waiters();
    StatusCode::ACCEPTED
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let error = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    shared
        .answers
        .lock()
        .await
        .insert(id, serde_json::json!({ "invocationError": error }));
    shared.answered.notify_waiters();
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().await = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// The built function as Lambda starts it: none of the test's environment, Lambda's own
/// variables pointing at `runtime`. Add the function's configuration, then spawn.
pub fn function_command(runtime: &RuntimeApi) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_okta-resend"));
    command.env_clear().envs(lambda_env(runtime));
    command
}

/// The environment Lambda gives a function, pointed at `runtime`.
pub fn lambda_env(runtime: &RuntimeApi) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime.address.as_str()),
        ("AWS_LAMBDA_FUNCTION_NAME", "okta-resend"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/okta-resend"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}
