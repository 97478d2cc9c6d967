from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CacheOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_OUTCOME_UNSPECIFIED: _ClassVar[CacheOutcome]
    CACHE_OUTCOME_EXACT: _ClassVar[CacheOutcome]
    CACHE_OUTCOME_MISS: _ClassVar[CacheOutcome]
    CACHE_OUTCOME_BYPASS: _ClassVar[CacheOutcome]
    CACHE_OUTCOME_SEMANTIC: _ClassVar[CacheOutcome]
CACHE_OUTCOME_UNSPECIFIED: CacheOutcome
CACHE_OUTCOME_EXACT: CacheOutcome
CACHE_OUTCOME_MISS: CacheOutcome
CACHE_OUTCOME_BYPASS: CacheOutcome
CACHE_OUTCOME_SEMANTIC: CacheOutcome

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class ModelList(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class Constraints(_message.Message):
    __slots__ = ("latency_budget_ms", "max_cost_usd", "min_quality", "models", "strict", "willingness_to_pay")
    LATENCY_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_USD_FIELD_NUMBER: _ClassVar[int]
    MIN_QUALITY_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    WILLINGNESS_TO_PAY_FIELD_NUMBER: _ClassVar[int]
    latency_budget_ms: float
    max_cost_usd: float
    min_quality: float
    models: ModelList
    strict: bool
    willingness_to_pay: float
    def __init__(self, latency_budget_ms: _Optional[float] = ..., max_cost_usd: _Optional[float] = ..., min_quality: _Optional[float] = ..., models: _Optional[_Union[ModelList, _Mapping]] = ..., strict: _Optional[bool] = ..., willingness_to_pay: _Optional[float] = ...) -> None: ...

class CacheControl(_message.Message):
    __slots__ = ("no_cache", "no_store", "ttl_s", "min_similarity", "verifier_threshold")
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    NO_STORE_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    MIN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    no_cache: bool
    no_store: bool
    ttl_s: float
    min_similarity: float
    verifier_threshold: float
    def __init__(self, no_cache: _Optional[bool] = ..., no_store: _Optional[bool] = ..., ttl_s: _Optional[float] = ..., min_similarity: _Optional[float] = ..., verifier_threshold: _Optional[float] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("prompt", "messages", "tenant", "agent", "workflow", "constraints", "cache", "tools_json", "params_json", "detect_language", "step")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    TOOLS_JSON_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    DETECT_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    tenant: str
    agent: str
    workflow: str
    constraints: Constraints
    cache: CacheControl
    tools_json: str
    params_json: str
    detect_language: bool
    step: str
    def __init__(self, prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., tenant: _Optional[str] = ..., agent: _Optional[str] = ..., workflow: _Optional[str] = ..., constraints: _Optional[_Union[Constraints, _Mapping]] = ..., cache: _Optional[_Union[CacheControl, _Mapping]] = ..., tools_json: _Optional[str] = ..., params_json: _Optional[str] = ..., detect_language: _Optional[bool] = ..., step: _Optional[str] = ...) -> None: ...

class RouteBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[RouteRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[RouteRequest, _Mapping]]] = ...) -> None: ...

class RouteBatchResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class Fallback(_message.Message):
    __slots__ = ("model", "provider", "tier", "predicted_cost_usd", "predicted_latency_ms", "quality")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    tier: str
    predicted_cost_usd: float
    predicted_latency_ms: float
    quality: float
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., tier: _Optional[str] = ..., predicted_cost_usd: _Optional[float] = ..., predicted_latency_ms: _Optional[float] = ..., quality: _Optional[float] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "model", "provider", "tier", "cache", "cached_response", "entry_id", "entry_age_s", "tenant", "category", "complexity", "confidence", "language", "input_tokens", "predicted_output_tokens", "predicted_cost_usd", "predicted_latency_ms", "cost_avoided_usd", "required_quality", "within_budget", "violations", "fallbacks", "reason", "route_ns", "overhead_us", "similarity", "semantic_entry", "predicted_quality", "willingness_to_pay", "agent", "workflow", "step", "budget_action")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    CACHED_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_AGE_S_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    COMPLEXITY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    COST_AVOIDED_USD_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_QUALITY_FIELD_NUMBER: _ClassVar[int]
    WITHIN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ROUTE_NS_FIELD_NUMBER: _ClassVar[int]
    OVERHEAD_US_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_ENTRY_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_QUALITY_FIELD_NUMBER: _ClassVar[int]
    WILLINGNESS_TO_PAY_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    BUDGET_ACTION_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    model: str
    provider: str
    tier: str
    cache: CacheOutcome
    cached_response: str
    entry_id: str
    entry_age_s: float
    tenant: str
    category: str
    complexity: float
    confidence: float
    language: str
    input_tokens: int
    predicted_output_tokens: int
    predicted_cost_usd: float
    predicted_latency_ms: float
    cost_avoided_usd: float
    required_quality: float
    within_budget: bool
    violations: _containers.RepeatedScalarFieldContainer[str]
    fallbacks: _containers.RepeatedCompositeFieldContainer[Fallback]
    reason: str
    route_ns: int
    overhead_us: float
    similarity: float
    semantic_entry: int
    predicted_quality: float
    willingness_to_pay: float
    agent: str
    workflow: str
    step: str
    budget_action: str
    def __init__(self, decision_id: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., tier: _Optional[str] = ..., cache: _Optional[_Union[CacheOutcome, str]] = ..., cached_response: _Optional[str] = ..., entry_id: _Optional[str] = ..., entry_age_s: _Optional[float] = ..., tenant: _Optional[str] = ..., category: _Optional[str] = ..., complexity: _Optional[float] = ..., confidence: _Optional[float] = ..., language: _Optional[str] = ..., input_tokens: _Optional[int] = ..., predicted_output_tokens: _Optional[int] = ..., predicted_cost_usd: _Optional[float] = ..., predicted_latency_ms: _Optional[float] = ..., cost_avoided_usd: _Optional[float] = ..., required_quality: _Optional[float] = ..., within_budget: _Optional[bool] = ..., violations: _Optional[_Iterable[str]] = ..., fallbacks: _Optional[_Iterable[_Union[Fallback, _Mapping]]] = ..., reason: _Optional[str] = ..., route_ns: _Optional[int] = ..., overhead_us: _Optional[float] = ..., similarity: _Optional[float] = ..., semantic_entry: _Optional[int] = ..., predicted_quality: _Optional[float] = ..., willingness_to_pay: _Optional[float] = ..., agent: _Optional[str] = ..., workflow: _Optional[str] = ..., step: _Optional[str] = ..., budget_action: _Optional[str] = ...) -> None: ...

class RecordRequest(_message.Message):
    __slots__ = ("decision_id", "response_text", "input_tokens", "output_tokens", "latency_ms", "ok", "outcome")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_TEXT_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    response_text: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    ok: bool
    outcome: float
    def __init__(self, decision_id: _Optional[str] = ..., response_text: _Optional[str] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., latency_ms: _Optional[float] = ..., ok: _Optional[bool] = ..., outcome: _Optional[float] = ...) -> None: ...

class RecordResponse(_message.Message):
    __slots__ = ("cost_usd", "stored", "replayed")
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    cost_usd: float
    stored: bool
    replayed: bool
    def __init__(self, cost_usd: _Optional[float] = ..., stored: _Optional[bool] = ..., replayed: _Optional[bool] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("decision_id", "outcome")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    outcome: float
    def __init__(self, decision_id: _Optional[str] = ..., outcome: _Optional[float] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("learned",)
    LEARNED_FIELD_NUMBER: _ClassVar[int]
    learned: bool
    def __init__(self, learned: _Optional[bool] = ...) -> None: ...

class InvalidateRequest(_message.Message):
    __slots__ = ("tenant", "entry_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    entry_id: str
    def __init__(self, tenant: _Optional[str] = ..., entry_id: _Optional[str] = ...) -> None: ...

class InvalidateResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class RouteLatency(_message.Message):
    __slots__ = ("count", "p50_us", "p90_us", "p99_us", "max_us", "mean_us")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    P50_US_FIELD_NUMBER: _ClassVar[int]
    P90_US_FIELD_NUMBER: _ClassVar[int]
    P99_US_FIELD_NUMBER: _ClassVar[int]
    MAX_US_FIELD_NUMBER: _ClassVar[int]
    MEAN_US_FIELD_NUMBER: _ClassVar[int]
    count: int
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float
    def __init__(self, count: _Optional[int] = ..., p50_us: _Optional[float] = ..., p90_us: _Optional[float] = ..., p99_us: _Optional[float] = ..., max_us: _Optional[float] = ..., mean_us: _Optional[float] = ...) -> None: ...

class CacheStats(_message.Message):
    __slots__ = ("entries", "bytes", "inserts", "evictions", "expirations")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    INSERTS_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRATIONS_FIELD_NUMBER: _ClassVar[int]
    entries: int
    bytes: int
    inserts: int
    evictions: int
    expirations: int
    def __init__(self, entries: _Optional[int] = ..., bytes: _Optional[int] = ..., inserts: _Optional[int] = ..., evictions: _Optional[int] = ..., expirations: _Optional[int] = ...) -> None: ...

class ServerStats(_message.Message):
    __slots__ = ("decisions_held", "decisions_expired", "decisions_evicted")
    DECISIONS_HELD_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_EVICTED_FIELD_NUMBER: _ClassVar[int]
    decisions_held: int
    decisions_expired: int
    decisions_evicted: int
    def __init__(self, decisions_held: _Optional[int] = ..., decisions_expired: _Optional[int] = ..., decisions_evicted: _Optional[int] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("requests", "exact_hits", "misses", "bypassed", "best_effort", "errors", "records", "failed_calls", "input_tokens", "output_tokens", "cost_usd", "cost_avoided_usd", "decisions", "route_latency", "cache", "classifier", "server", "tenant", "semantic_hits", "semantic", "quality")
    class DecisionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    EXACT_HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    BYPASSED_FIELD_NUMBER: _ClassVar[int]
    BEST_EFFORT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    FAILED_CALLS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    COST_AVOIDED_USD_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_LATENCY_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_HITS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    requests: int
    exact_hits: int
    misses: int
    bypassed: int
    best_effort: int
    errors: int
    records: int
    failed_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cost_avoided_usd: float
    decisions: _containers.ScalarMap[str, int]
    route_latency: RouteLatency
    cache: CacheStats
    classifier: str
    server: ServerStats
    tenant: str
    semantic_hits: int
    semantic: SemanticStats
    quality: QualityStats
    def __init__(self, requests: _Optional[int] = ..., exact_hits: _Optional[int] = ..., misses: _Optional[int] = ..., bypassed: _Optional[int] = ..., best_effort: _Optional[int] = ..., errors: _Optional[int] = ..., records: _Optional[int] = ..., failed_calls: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ..., cost_avoided_usd: _Optional[float] = ..., decisions: _Optional[_Mapping[str, int]] = ..., route_latency: _Optional[_Union[RouteLatency, _Mapping]] = ..., cache: _Optional[_Union[CacheStats, _Mapping]] = ..., classifier: _Optional[str] = ..., server: _Optional[_Union[ServerStats, _Mapping]] = ..., tenant: _Optional[str] = ..., semantic_hits: _Optional[int] = ..., semantic: _Optional[_Union[SemanticStats, _Mapping]] = ..., quality: _Optional[_Union[QualityStats, _Mapping]] = ...) -> None: ...

class QualityStats(_message.Message):
    __slots__ = ("models", "mapped", "willingness_to_pay", "labels", "ignored_labels", "tenants", "shared_offset", "fallbacks")
    class MappedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SharedOffsetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MAPPED_FIELD_NUMBER: _ClassVar[int]
    WILLINGNESS_TO_PAY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IGNORED_LABELS_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    SHARED_OFFSET_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    mapped: _containers.ScalarMap[str, str]
    willingness_to_pay: float
    labels: int
    ignored_labels: int
    tenants: int
    shared_offset: _containers.ScalarMap[str, float]
    fallbacks: int
    def __init__(self, models: _Optional[_Iterable[str]] = ..., mapped: _Optional[_Mapping[str, str]] = ..., willingness_to_pay: _Optional[float] = ..., labels: _Optional[int] = ..., ignored_labels: _Optional[int] = ..., tenants: _Optional[int] = ..., shared_offset: _Optional[_Mapping[str, float]] = ..., fallbacks: _Optional[int] = ...) -> None: ...

class SemanticStats(_message.Message):
    __slots__ = ("enabled", "entries", "bytes", "inserts", "evictions", "expirations", "hits", "below_threshold", "guard_rejections", "stale_candidates", "guard_overruled")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    INSERTS_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPIRATIONS_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    BELOW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GUARD_REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    STALE_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    GUARD_OVERRULED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    entries: int
    bytes: int
    inserts: int
    evictions: int
    expirations: int
    hits: int
    below_threshold: int
    guard_rejections: int
    stale_candidates: int
    guard_overruled: int
    def __init__(self, enabled: _Optional[bool] = ..., entries: _Optional[int] = ..., bytes: _Optional[int] = ..., inserts: _Optional[int] = ..., evictions: _Optional[int] = ..., expirations: _Optional[int] = ..., hits: _Optional[int] = ..., below_threshold: _Optional[int] = ..., guard_rejections: _Optional[int] = ..., stale_candidates: _Optional[int] = ..., guard_overruled: _Optional[int] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("prompt", "messages", "tenant", "models", "tools_json", "params_json", "min_quality")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_JSON_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    MIN_QUALITY_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    tenant: str
    models: ModelList
    tools_json: str
    params_json: str
    min_quality: float
    def __init__(self, prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., tenant: _Optional[str] = ..., models: _Optional[_Union[ModelList, _Mapping]] = ..., tools_json: _Optional[str] = ..., params_json: _Optional[str] = ..., min_quality: _Optional[float] = ...) -> None: ...

class LookupResponse(_message.Message):
    __slots__ = ("cached_response", "entry_id", "entry_age_s", "tenant", "model", "provider", "tier", "category", "cost_avoided_usd")
    CACHED_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_AGE_S_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    COST_AVOIDED_USD_FIELD_NUMBER: _ClassVar[int]
    cached_response: str
    entry_id: str
    entry_age_s: float
    tenant: str
    model: str
    provider: str
    tier: str
    category: str
    cost_avoided_usd: float
    def __init__(self, cached_response: _Optional[str] = ..., entry_id: _Optional[str] = ..., entry_age_s: _Optional[float] = ..., tenant: _Optional[str] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., tier: _Optional[str] = ..., category: _Optional[str] = ..., cost_avoided_usd: _Optional[float] = ...) -> None: ...

class ReloadConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadConfigResponse(_message.Message):
    __slots__ = ("source", "classifier", "models", "api_keys", "cache_entries_dropped")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    API_KEYS_FIELD_NUMBER: _ClassVar[int]
    CACHE_ENTRIES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    source: str
    classifier: str
    models: int
    api_keys: int
    cache_entries_dropped: int
    def __init__(self, source: _Optional[str] = ..., classifier: _Optional[str] = ..., models: _Optional[int] = ..., api_keys: _Optional[int] = ..., cache_entries_dropped: _Optional[int] = ...) -> None: ...

class GetCatalogRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Tier(_message.Message):
    __slots__ = ("name", "price_in", "price_out", "ttft_ms", "prefill_tps", "decode_tps", "energy_j_per_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRICE_IN_FIELD_NUMBER: _ClassVar[int]
    PRICE_OUT_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_TPS_FIELD_NUMBER: _ClassVar[int]
    DECODE_TPS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    price_in: float
    price_out: float
    ttft_ms: float
    prefill_tps: float
    decode_tps: float
    energy_j_per_token: float
    def __init__(self, name: _Optional[str] = ..., price_in: _Optional[float] = ..., price_out: _Optional[float] = ..., ttft_ms: _Optional[float] = ..., prefill_tps: _Optional[float] = ..., decode_tps: _Optional[float] = ..., energy_j_per_token: _Optional[float] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "provider", "context_window", "quality", "tiers", "source")
    class QualityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    provider: str
    context_window: int
    quality: _containers.ScalarMap[str, float]
    tiers: _containers.RepeatedCompositeFieldContainer[Tier]
    source: str
    def __init__(self, name: _Optional[str] = ..., provider: _Optional[str] = ..., context_window: _Optional[int] = ..., quality: _Optional[_Mapping[str, float]] = ..., tiers: _Optional[_Iterable[_Union[Tier, _Mapping]]] = ..., source: _Optional[str] = ...) -> None: ...

class Catalog(_message.Message):
    __slots__ = ("models", "files", "categories")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    files: _containers.RepeatedScalarFieldContainer[str]
    categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., files: _Optional[_Iterable[str]] = ..., categories: _Optional[_Iterable[str]] = ...) -> None: ...
