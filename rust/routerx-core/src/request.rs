//! Owned request and constraint values: the Python layer copies its inputs into these before
//! releasing the GIL, so the core never touches Python objects.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    System = 1,
    User = 2,
    Assistant = 3,
    Tool = 4,
}

impl Role {
    /// Accepts the role names of the common chat APIs; `developer` is OpenAI's newer name for `system`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "system" | "developer" => Some(Role::System),
            "tool" | "function" => Some(Role::Tool),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Message { role: Role::User, content: content.into() }
    }
}

/// Everything about a request that changes the answer, and so the cache key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// Tenant or namespace: cache entries never cross it.
    pub tenant: String,
    pub messages: Vec<Message>,
    /// Canonical JSON of the tool definitions (sorted keys), empty when there are none.
    pub tools: String,
    /// Number of tool definitions in `tools`.
    pub tool_count: u32,
    /// Canonical text of the sampling parameters (sorted `k=v` pairs), empty for defaults.
    pub params: String,
    /// The caller's cap on output tokens (`max_tokens`), which bounds predicted cost and latency.
    pub max_output_tokens: Option<u32>,
    /// Accounting and budget labels (empty when not given). Not part of the cache key: the same
    /// question asked by two agents of one tenant has one answer.
    pub agent: String,
    pub workflow: String,
    pub step: String,
    /// Who asks, for single flight (not part of the cache key): None is the calling thread; a
    /// server gives each call its own id, since its worker threads serve many callers.
    pub caller: Option<u64>,
}

impl Request {
    pub fn from_prompt(tenant: &str, prompt: impl Into<String>) -> Self {
        Request { tenant: tenant.to_owned(), messages: vec![Message::user(prompt)], ..Default::default() }
    }

    pub fn total_bytes(&self) -> usize {
        self.messages.iter().map(|m| m.content.len()).sum::<usize>() + self.tools.len()
    }

    /// Rejects what no model could answer: no messages, nothing but whitespace, or more bytes
    /// than the configured limit (checked before tokenising, so a huge prompt costs nothing).
    pub fn validate(&self, max_bytes: usize) -> Result<()> {
        if self.tenant.is_empty() || self.tenant.len() > 256 {
            return Err(Error::invalid_request("tenant", "must be 1 to 256 bytes"));
        }
        for (field, v) in [("agent", &self.agent), ("workflow", &self.workflow), ("step", &self.step)] {
            if v.len() > 256 {
                return Err(Error::invalid_request(field, "must be at most 256 bytes"));
            }
        }
        if self.messages.is_empty() {
            return Err(Error::invalid_request("messages", "at least one message is required"));
        }
        if self.messages.iter().all(|m| m.content.trim().is_empty()) {
            return Err(Error::invalid_request("messages", "the prompt is empty"));
        }
        let total = self.total_bytes();
        if total > max_bytes {
            return Err(Error::invalid_request("messages", format!("the prompt is {total} bytes, over the limit of {max_bytes} bytes")));
        }
        Ok(())
    }

    /// Index of the last user turn (or of the last message when no turn is the user's).
    pub fn last_user_index(&self) -> Option<usize> {
        self.messages.iter().rposition(|m| m.role == Role::User).or(self.messages.len().checked_sub(1))
    }

    /// The last user turn: what the classifier reads for the task at hand.
    pub fn last_user(&self) -> &str {
        self.last_user_index().map(|i| self.messages[i].content.as_str()).unwrap_or("")
    }
}

/// Per-request cache controls.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CacheControl {
    /// Do not answer from the cache.
    pub no_cache: bool,
    /// Do not store the answer recorded for this decision.
    pub no_store: bool,
    /// Time to live of the stored answer; `None` uses the cache default.
    pub ttl_s: Option<f64>,
}

/// The caller's constraints; unset limits are infinite.
#[derive(Clone, Debug, PartialEq)]
pub struct Constraints {
    pub latency_budget_ms: f64,
    pub max_cost_usd: f64,
    pub min_quality: Option<f64>,
    /// USD the caller would pay for one unit of quality (a sure good answer over a sure bad one):
    /// when set, the candidate with the most expected value `wtp × quality − cost` wins instead of
    /// the cheapest that meets the required quality.
    pub willingness_to_pay: Option<f64>,
    /// Candidate model indices the caller allows (sorted, deduplicated); `None` allows all.
    pub allowed_models: Option<Vec<u32>>,
    /// Raise instead of returning a best-effort decision when nothing fits.
    pub strict: bool,
    pub cache: CacheControl,
}

impl Default for Constraints {
    fn default() -> Self {
        Constraints {
            latency_budget_ms: f64::INFINITY,
            max_cost_usd: f64::INFINITY,
            min_quality: None,
            willingness_to_pay: None,
            allowed_models: None,
            strict: false,
            cache: CacheControl::default(),
        }
    }
}

impl Constraints {
    /// NaN, negative and zero budgets are caller bugs, not "no limit": reject them by name.
    pub fn validate(&self) -> Result<()> {
        let positive = |field: &str, v: f64| -> Result<()> {
            if v.is_nan() || v <= 0.0 {
                return Err(Error::invalid_constraint(field, format!("must be a positive number, got {v}")));
            }
            Ok(())
        };
        positive("latency_budget_ms", self.latency_budget_ms)?;
        positive("max_cost_usd", self.max_cost_usd)?;
        if let Some(q) = self.min_quality {
            if !(0.0..=1.0).contains(&q) {
                return Err(Error::invalid_constraint("min_quality", format!("must be in [0, 1], got {q}")));
            }
        }
        if let Some(w) = self.willingness_to_pay {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::invalid_constraint("willingness_to_pay", format!("must be a finite number of USD ≥ 0, got {w}")));
            }
        }
        if let Some(ttl) = self.cache.ttl_s {
            if !(ttl.is_finite() && ttl > 0.0) {
                return Err(Error::invalid_constraint("ttl_s", format!("must be a positive number of seconds, got {ttl}")));
            }
        }
        if let Some(a) = &self.allowed_models {
            if a.is_empty() {
                return Err(Error::invalid_constraint("models", "the list of allowed models is empty"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_and_huge() {
        let r = Request::from_prompt("t", "   \n");
        assert!(matches!(r.validate(100), Err(Error::InvalidRequest { .. })));
        let r = Request::from_prompt("t", "x".repeat(101));
        let e = r.validate(100).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        assert!(Request::from_prompt("t", "hi").validate(100).is_ok());
        assert!(Request::from_prompt("", "hi").validate(100).is_err());
    }

    #[test]
    fn rejects_bad_budgets() {
        for (lat, cost) in [(f64::NAN, 1.0), (-1.0, 1.0), (0.0, 1.0), (1.0, f64::NAN), (1.0, -0.5)] {
            let c = Constraints { latency_budget_ms: lat, max_cost_usd: cost, ..Default::default() };
            assert!(c.validate().is_err(), "{lat} {cost}");
        }
        let c = Constraints { min_quality: Some(1.5), ..Default::default() };
        assert!(c.validate().is_err());
        assert!(Constraints::default().validate().is_ok());
    }
}
