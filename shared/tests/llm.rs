//! The LLM advisor against a local mock of an OpenAI-compatible endpoint: the exact request, a
//! valid answer, and every way an answer can be unusable.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rust_decimal_macros::dec;
use secrecy::SecretString;
use tradefleet::bot::llm::{LlmAction, LlmAdvisor, LlmError};
use wiremock::matchers::{bearer_token, body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn completion(content: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}]
    })
}

async fn advisor(server: &MockServer, timeout_ms: u64) -> LlmAdvisor {
    LlmAdvisor::new(
        &format!("{}/v1", server.uri()),
        "test-model",
        Some(SecretString::from("sk-test-secret")),
        Duration::from_millis(timeout_ms),
    )
    .unwrap()
}

#[tokio::test]
async fn sends_the_analysis_and_parses_a_recommendation() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(bearer_token("sk-test-secret"))
        .and(body_partial_json(serde_json::json!({
            "model": "test-model",
            "response_format": {"type": "json_object"}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            r#"{"action":"BUY","confidence":0.72,"position_size_pct":3.5,"stop_loss":1.02,"take_profit":"1.1","reasoning":"oversold bounce"}"#,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let a = advisor(&server, 2_000).await;
    let advice = a
        .advise(&serde_json::json!({"rsi_14": 22.5}))
        .await
        .unwrap();
    assert_eq!(advice.action, LlmAction::Buy);
    assert_eq!(advice.confidence, dec!(0.72));
    assert_eq!(advice.position_size_pct, Some(dec!(3.5)));
    assert_eq!(advice.take_profit, Some(dec!(1.1)));
    // The user message carries the analysis.
    let req = &server.received_requests().await.unwrap()[0];
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert!(
        body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains("rsi_14")
    );
    assert!(!format!("{a:?}").contains("sk-test-secret"));
}

#[tokio::test]
async fn unusable_answers_are_errors() {
    let cases = [
        (r#"{"action":"MOON","confidence":0.5}"#, "unknown action"),
        (
            r#"{"action":"BUY","confidence":1.5}"#,
            "confidence out of range",
        ),
        (
            r#"{"action":"BUY","confidence":0.5,"position_size_pct":150}"#,
            "size out of range",
        ),
        (
            r#"{"action":"SELL","confidence":0.5,"stop_loss":-1}"#,
            "negative price",
        ),
        ("I think you should buy", "prose"),
        (r#"{"action":"BUY""#, "truncated"),
    ];
    for (content, what) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(completion(content)))
            .mount(&server)
            .await;
        let err = advisor(&server, 2_000)
            .await
            .advise(&serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(matches!(err, LlmError::Malformed(_)), "{what}: {err}");
    }
}

#[tokio::test]
async fn fenced_json_is_accepted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            "```json\n{\"action\":\"HOLD\",\"confidence\":0.3}\n```",
        )))
        .mount(&server)
        .await;
    let advice = advisor(&server, 2_000)
        .await
        .advise(&serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(advice.action, LlmAction::Hold);
    assert_eq!(advice.position_size_pct, None);
}

#[tokio::test]
async fn http_errors_and_timeouts_are_errors_without_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(429).set_body_string("slow down"))
        .mount(&server)
        .await;
    let err = advisor(&server, 2_000)
        .await
        .advise(&serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Status { status: 429, .. }), "{err}");
    assert!(!err.to_string().contains("sk-test-secret"));

    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion(r#"{"action":"BUY","confidence":0.9}"#))
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&slow)
        .await;
    let err = advisor(&slow, 200)
        .await
        .advise(&serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Transport(_)), "{err}");

    let garbage = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>gateway</html>"))
        .mount(&garbage)
        .await;
    let err = advisor(&garbage, 2_000)
        .await
        .advise(&serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Malformed(_)), "{err}");
}

#[test]
fn disabled_config_builds_no_client_and_bad_urls_are_rejected() {
    let cfg = tradefleet::config::LlmConfig::default();
    assert!(LlmAdvisor::from_config(&cfg).unwrap().is_none());
    let err = LlmAdvisor::new("ftp://x", "m", None, Duration::from_secs(1)).unwrap_err();
    assert!(err.to_string().contains("llm.base_url"), "{err}");
}
