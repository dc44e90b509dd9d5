//! The optional LLM advisor: sends the cycle's analysis to an OpenAI-compatible chat-completions
//! endpoint and reads back a structured recommendation (action, confidence, size, levels).
//! Its answer is advice: strategies and sizing decide what to do with it, and any failure
//! (timeout, refusal, malformed answer) leaves the cycle on its technical signal.

use std::time::Duration;

use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::LlmConfig;
use crate::exchange::http::{install_crypto_provider, truncate};

/// What the LLM recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LlmAction {
    Buy,
    Sell,
    Hold,
    Close,
}

/// A validated recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmAdvice {
    pub action: LlmAction,
    /// 0..1.
    pub confidence: Decimal,
    /// Suggested margin, % of equity (0..100), when the model gave one.
    pub position_size_pct: Option<Decimal>,
    pub stop_loss: Option<Decimal>,
    pub take_profit: Option<Decimal>,
    pub reasoning: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("LLM request failed: {0}")]
    Transport(String),
    #[error("LLM endpoint answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("LLM answer is not a valid recommendation: {0}")]
    Malformed(String),
    #[error("LLM is misconfigured: {0}")]
    Config(String),
}

/// Client of one OpenAI-compatible endpoint. `Debug` never shows the API key.
#[derive(Clone)]
pub struct LlmAdvisor {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<SecretString>,
}

impl std::fmt::Debug for LlmAdvisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmAdvisor")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

const SYSTEM_PROMPT: &str = "You are a futures trading analyst. You receive JSON with technical \
indicators per timeframe and the bot's own signal. Answer ONLY with a JSON object: \
{\"action\": \"BUY\"|\"SELL\"|\"HOLD\"|\"CLOSE\", \"confidence\": number 0..1, \
\"position_size_pct\": number 0..100 or null, \"stop_loss\": number or null, \
\"take_profit\": number or null, \"reasoning\": short string}.";

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}
#[derive(Deserialize)]
struct Choice {
    message: Message,
}
#[derive(Deserialize)]
struct Message {
    content: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdvice {
    action: LlmAction,
    #[serde(deserialize_with = "crate::exchange::wire::decimal")]
    confidence: Decimal,
    #[serde(default, deserialize_with = "crate::exchange::wire::opt_decimal")]
    position_size_pct: Option<Decimal>,
    #[serde(default, deserialize_with = "crate::exchange::wire::opt_decimal")]
    stop_loss: Option<Decimal>,
    #[serde(default, deserialize_with = "crate::exchange::wire::opt_decimal")]
    take_profit: Option<Decimal>,
    #[serde(default)]
    reasoning: String,
}

/// Parse and range-check the model's message content.
pub fn parse_advice(content: &str) -> Result<LlmAdvice, LlmError> {
    // Models sometimes wrap JSON in a Markdown fence.
    let text = content
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let raw: RawAdvice = serde_json::from_str(text)
        .map_err(|e| LlmError::Malformed(format!("{e}: {}", truncate(text, 200))))?;
    if raw.confidence < Decimal::ZERO || raw.confidence > Decimal::ONE {
        return Err(LlmError::Malformed(format!(
            "confidence {} is outside 0..1",
            raw.confidence
        )));
    }
    if let Some(p) = raw.position_size_pct
        && (p < Decimal::ZERO || p > Decimal::ONE_HUNDRED)
    {
        return Err(LlmError::Malformed(format!(
            "position_size_pct {p} is outside 0..100"
        )));
    }
    for (name, v) in [
        ("stop_loss", raw.stop_loss),
        ("take_profit", raw.take_profit),
    ] {
        if let Some(v) = v
            && v <= Decimal::ZERO
        {
            return Err(LlmError::Malformed(format!("{name} {v} is not a price")));
        }
    }
    Ok(LlmAdvice {
        action: raw.action,
        confidence: raw.confidence,
        position_size_pct: raw.position_size_pct,
        stop_loss: raw.stop_loss,
        take_profit: raw.take_profit,
        reasoning: raw.reasoning.chars().take(2_000).collect(),
    })
}

impl LlmAdvisor {
    /// `None` when the LLM is disabled in config.
    pub fn from_config(cfg: &LlmConfig) -> Result<Option<Self>, LlmError> {
        if !cfg.enabled {
            return Ok(None);
        }
        Self::new(
            &cfg.base_url,
            &cfg.model,
            cfg.api_key.clone(),
            Duration::from_millis(cfg.timeout_ms),
        )
        .map(Some)
    }

    pub fn new(
        base_url: &str,
        model: &str,
        api_key: Option<SecretString>,
        timeout: Duration,
    ) -> Result<Self, LlmError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(LlmError::Config(format!(
                "llm.base_url {base_url:?} must be an http(s) URL"
            )));
        }
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| LlmError::Config(e.to_string()))?;
        Ok(Self {
            http,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            model: model.to_string(),
            api_key,
        })
    }

    /// Ask for a recommendation on `analysis` (any JSON: indicators per timeframe, the signal).
    pub async fn advise(&self, analysis: &serde_json::Value) -> Result<LlmAdvice, LlmError> {
        let body = serde_json::json!({
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": analysis.to_string()},
            ],
        });
        let mut req = self.http.post(&self.url).json(&body);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose_secret());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| LlmError::Transport(e.without_url().to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| LlmError::Transport(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(LlmError::Status {
                status: status.as_u16(),
                body: truncate(&text, 300).to_string(),
            });
        }
        let chat: ChatResponse = serde_json::from_str(&text)
            .map_err(|e| LlmError::Malformed(format!("not a chat completion: {e}")))?;
        let content = chat
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| LlmError::Malformed("no message content".into()))?;
        parse_advice(&content)
    }
}
