//! `routerx.v1.Decision` in protobuf wire format, encoded straight from the core's outcome.
//!
//! The gRPC server answers Route with these bytes instead of building a Python protobuf message
//! field by field (25 attribute reads across the boundary plus the message construction: most of
//! a cache hit's handler time). The structs mirror `protos/routerx/v1/router.proto`; the Python
//! tests decode the bytes with the generated `router_pb2.Decision` and compare every field with
//! the in-process Decision, so a drift between the two fails there.
//!
//! `RouteRequest` is decoded here for the server's exact-hit fast path only: just enough of it
//! to tell a plain request (what the fast path answers) from everything else (left to the
//! general path, which decodes it again in Python).

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct Fallback {
    #[prost(string, tag = "1")]
    pub model: String,
    #[prost(string, tag = "2")]
    pub provider: String,
    #[prost(string, tag = "3")]
    pub tier: String,
    #[prost(double, tag = "4")]
    pub predicted_cost_usd: f64,
    #[prost(double, tag = "5")]
    pub predicted_latency_ms: f64,
    #[prost(double, tag = "6")]
    pub quality: f64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Decision {
    #[prost(string, tag = "1")]
    pub decision_id: String,
    #[prost(string, tag = "2")]
    pub model: String,
    #[prost(string, tag = "3")]
    pub provider: String,
    #[prost(string, tag = "4")]
    pub tier: String,
    /// CacheOutcome: 1 exact, 2 miss, 3 bypass, 4 semantic.
    #[prost(int32, tag = "5")]
    pub cache: i32,
    #[prost(string, optional, tag = "6")]
    pub cached_response: Option<String>,
    #[prost(string, tag = "7")]
    pub entry_id: String,
    #[prost(double, optional, tag = "8")]
    pub entry_age_s: Option<f64>,
    #[prost(string, tag = "9")]
    pub tenant: String,
    #[prost(string, tag = "10")]
    pub category: String,
    #[prost(float, tag = "11")]
    pub complexity: f32,
    #[prost(float, optional, tag = "12")]
    pub confidence: Option<f32>,
    #[prost(string, optional, tag = "13")]
    pub language: Option<String>,
    #[prost(uint32, tag = "14")]
    pub input_tokens: u32,
    #[prost(uint32, tag = "15")]
    pub predicted_output_tokens: u32,
    #[prost(double, tag = "16")]
    pub predicted_cost_usd: f64,
    #[prost(double, tag = "17")]
    pub predicted_latency_ms: f64,
    #[prost(double, tag = "18")]
    pub cost_avoided_usd: f64,
    #[prost(float, optional, tag = "19")]
    pub required_quality: Option<f32>,
    #[prost(bool, tag = "20")]
    pub within_budget: bool,
    #[prost(string, repeated, tag = "21")]
    pub violations: Vec<String>,
    #[prost(message, repeated, tag = "22")]
    pub fallbacks: Vec<Fallback>,
    #[prost(string, tag = "23")]
    pub reason: String,
    #[prost(uint64, tag = "24")]
    pub route_ns: u64,
    #[prost(double, tag = "25")]
    pub overhead_us: f64,
    #[prost(float, optional, tag = "26")]
    pub similarity: Option<f32>,
    #[prost(uint64, optional, tag = "27")]
    pub semantic_entry: Option<u64>,
    #[prost(float, optional, tag = "28")]
    pub predicted_quality: Option<f32>,
    #[prost(double, optional, tag = "29")]
    pub willingness_to_pay: Option<f64>,
    #[prost(string, optional, tag = "30")]
    pub agent: Option<String>,
    #[prost(string, optional, tag = "31")]
    pub workflow: Option<String>,
    #[prost(string, optional, tag = "32")]
    pub step: Option<String>,
    #[prost(string, optional, tag = "33")]
    pub budget_action: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ChatMessage {
    #[prost(string, tag = "1")]
    pub role: String,
    #[prost(string, tag = "2")]
    pub content: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct CacheControl {
    #[prost(bool, tag = "1")]
    pub no_cache: bool,
    #[prost(bool, tag = "2")]
    pub no_store: bool,
    #[prost(double, optional, tag = "3")]
    pub ttl_s: Option<f64>,
    #[prost(float, optional, tag = "4")]
    pub min_similarity: Option<f32>,
    #[prost(float, optional, tag = "5")]
    pub verifier_threshold: Option<f32>,
}

impl CacheControl {
    pub fn is_default(&self) -> bool {
        !self.no_cache && !self.no_store && self.ttl_s.is_none() && self.min_similarity.is_none() && self.verifier_threshold.is_none()
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct RouteRequest {
    #[prost(string, tag = "1")]
    pub prompt: String,
    #[prost(message, repeated, tag = "2")]
    pub messages: Vec<ChatMessage>,
    #[prost(string, optional, tag = "3")]
    pub tenant: Option<String>,
    /// Not used by routing, but decoded so that invalid UTF-8 fails here as in Python.
    #[prost(string, tag = "4")]
    pub agent: String,
    #[prost(string, tag = "5")]
    pub workflow: String,
    /// `Constraints`: only whether it is present matters here (present: not a plain request).
    #[prost(bytes = "vec", optional, tag = "6")]
    pub constraints: Option<Vec<u8>>,
    #[prost(message, optional, tag = "7")]
    pub cache: Option<CacheControl>,
    #[prost(string, tag = "8")]
    pub tools_json: String,
    #[prost(string, tag = "9")]
    pub params_json: String,
    #[prost(bool, tag = "10")]
    pub detect_language: bool,
    #[prost(string, tag = "11")]
    pub step: String,
}

pub fn cache_outcome(name: &str) -> i32 {
    match name {
        "exact" => 1,
        "miss" => 2,
        "bypass" => 3,
        "semantic" => 4,
        _ => 0,
    }
}

impl Decision {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}
