//! Cache keys: a 128-bit XXH3 of everything that changes the answer.
//!
//! Every variable-length part is length-prefixed so that no two different requests can
//! serialise to the same byte stream ("ab"+"c" vs "a"+"bc").

use xxhash_rust::xxh3::Xxh3;

use crate::request::Request;

pub type Key = u128;

/// Fingerprint of the request within a model scope (the set of models the caller allows).
pub fn fingerprint(req: &Request, model_scope: &[u32]) -> Key {
    let mut h = Xxh3::new();
    let mut put = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    put(b"routerx-key-v1");
    put(req.tenant.as_bytes());
    let scope: Vec<u8> = model_scope.iter().flat_map(|m| m.to_le_bytes()).collect();
    put(&scope);
    put(req.tools.as_bytes());
    put(req.params.as_bytes());
    for m in &req.messages {
        put(&[m.role as u8]);
        put(m.content.as_bytes());
    }
    h.digest128()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Message, Role};

    fn req(tenant: &str, msgs: &[(&str, Role)]) -> Request {
        Request {
            tenant: tenant.into(),
            messages: msgs.iter().map(|(c, r)| Message { role: *r, content: (*c).into() }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = req("a", &[("sys", Role::System), ("hello", Role::User)]);
        let k = fingerprint(&base, &[]);
        assert_eq!(k, fingerprint(&base.clone(), &[]));
        assert_ne!(k, fingerprint(&req("b", &[("sys", Role::System), ("hello", Role::User)]), &[]));
        assert_ne!(k, fingerprint(&req("a", &[("sys2", Role::System), ("hello", Role::User)]), &[]));
        assert_ne!(k, fingerprint(&req("a", &[("sys", Role::User), ("hello", Role::User)]), &[]));
        assert_ne!(k, fingerprint(&req("a", &[("hello", Role::User)]), &[]));
        assert_ne!(k, fingerprint(&base, &[1]));
        let mut t = base.clone();
        t.tools = "[{}]".into();
        assert_ne!(k, fingerprint(&t, &[]));
        let mut p = base.clone();
        p.params = "temperature=0".into();
        assert_ne!(k, fingerprint(&p, &[]));
    }

    #[test]
    fn boundaries_are_unambiguous() {
        let a = req("t", &[("ab", Role::User), ("c", Role::User)]);
        let b = req("t", &[("a", Role::User), ("bc", Role::User)]);
        assert_ne!(fingerprint(&a, &[]), fingerprint(&b, &[]));
    }
}
