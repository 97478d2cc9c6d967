//! The semantic cache's core: the entry store, the near-miss guard and the pair verifier.
//!
//! The similarity index itself is faiss, driven from Python with contiguous float32 batches; the
//! core owns the entries (id → answer, scope, metadata) and decides whether a candidate the index
//! returns may be served.

pub mod guard;
pub mod store;
pub mod verifier;

pub use store::{query_of, scope_of, Accepted, Rejection, SemEntry, SemanticConfig, SemanticStats, SemanticStore};
pub use verifier::Verifier;
