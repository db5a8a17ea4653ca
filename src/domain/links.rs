//! Links for customers: one order, signed by the service, expiring, opened without signing
//! in and shown without personal data.
//!
//! A link's token is `<uid>.<expiry, unix seconds>.<key id>.<signature>`, the signature an
//! HMAC-SHA-256 under the named key of the rest (with a version label). Keys rotate: the
//! first of the configured keys signs new links, every configured key checks them, so a key
//! taken out of the settings refuses every link it signed. Nothing is stored: a link is
//! checked by computation alone.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::order::OrderUid;

/// What every signed message starts with: a link of another kind or version never passes.
const LABEL: &[u8] = b"order-svc customer link v1\0";

/// Shortest key taken (bytes of its text).
pub const MIN_KEY: usize = 32;

/// One signing key and its id (as it appears in links).
#[derive(Clone)]
pub struct LinkKey {
    /// Letters and digits, written in each link it signs.
    pub id: String,
    /// The HMAC key.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a link opens nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    /// Not a link of ours: malformed, a signature that does not verify, or a key that has
    /// been rotated out.
    #[error("this link is not valid")]
    Invalid,
    /// Ours, but past its expiry.
    #[error("this link has expired")]
    Expired,
}

/// Signs and checks links.
#[derive(Debug, Clone)]
pub struct LinkSigner {
    /// The first signs; all check.
    keys: Vec<LinkKey>,
    /// How long a new link lasts, in seconds.
    ttl: i64,
}

impl LinkSigner {
    /// `keys`: at least one, ids of letters and digits (checked by the settings).
    pub fn new(keys: Vec<LinkKey>, ttl_seconds: i64) -> Option<Self> {
        (!keys.is_empty()).then_some(Self {
            keys,
            ttl: ttl_seconds,
        })
    }

    fn mac(key: &LinkKey, uid: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key.secret).expect("HMAC takes any key");
        mac.update(LABEL);
        mac.update(format!("{uid}.{expires}.{}", key.id).as_bytes());
        mac
    }

    /// A link's token for `uid`, made at `now` (unix seconds), and when it expires.
    pub fn sign(&self, uid: &OrderUid, now: i64) -> (String, i64) {
        let key = &self.keys[0];
        let expires = now.saturating_add(self.ttl);
        let signature = Self::mac(key, uid.as_str(), expires)
            .finalize()
            .into_bytes();
        let token = format!(
            "{}.{expires}.{}.{}",
            uid.as_str(),
            key.id,
            URL_SAFE_NO_PAD.encode(signature)
        );
        (token, expires)
    }

    /// The order a token opens at `now`, or why it opens nothing. The signature is
    /// checked before the expiry, so an expired link says so only if it was ours.
    pub fn verify(&self, token: &str, now: i64) -> Result<OrderUid, LinkRefusal> {
        let mut parts = token.split('.');
        let (Some(uid), Some(expires), Some(kid), Some(signature), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(LinkRefusal::Invalid);
        };
        let uid = OrderUid::parse(uid.to_owned()).map_err(|_| LinkRefusal::Invalid)?;
        let expires: i64 = expires
            .parse()
            .ok()
            .filter(|e: &i64| e.to_string() == expires)
            .ok_or(LinkRefusal::Invalid)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == kid)
            .ok_or(LinkRefusal::Invalid)?;
        let given = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkRefusal::Invalid)?;
        let wanted = Self::mac(key, uid.as_str(), expires)
            .finalize()
            .into_bytes();
        if !bool::from(wanted.as_slice().ct_eq(&given)) {
            return Err(LinkRefusal::Invalid);
        }
        if now >= expires {
            return Err(LinkRefusal::Expired);
        }
        Ok(uid)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(id: &str) -> LinkKey {
        LinkKey {
            id: id.into(),
            secret: format!("{id}-secret-of-at-least-32-bytes!!").into_bytes(),
        }
    }

    fn uid(s: &str) -> OrderUid {
        OrderUid::parse(s.to_owned()).unwrap()
    }

    #[test]
    fn a_link_opens_its_order_until_it_expires() {
        let signer = LinkSigner::new(vec![key("k1")], 3600).unwrap();
        let (token, expires) = signer.sign(&uid("b563feb7b2b84b6test"), 1_000);
        assert_eq!(expires, 4_600);
        assert_eq!(signer.verify(&token, 4_599), Ok(uid("b563feb7b2b84b6test")));
        assert_eq!(signer.verify(&token, 4_600), Err(LinkRefusal::Expired));
    }

    #[test]
    fn a_rotated_key_keeps_its_links_until_it_is_taken_out() {
        let old = LinkSigner::new(vec![key("k1")], 3600).unwrap();
        let (token, _) = old.sign(&uid("abc"), 0);
        let rotated = LinkSigner::new(vec![key("k2"), key("k1")], 3600).unwrap();
        assert_eq!(rotated.verify(&token, 1), Ok(uid("abc")));
        let (new_token, _) = rotated.sign(&uid("abc"), 0);
        assert!(new_token.contains(".k2."), "{new_token}");
        let retired = LinkSigner::new(vec![key("k2")], 3600).unwrap();
        assert_eq!(retired.verify(&token, 1), Err(LinkRefusal::Invalid));
        assert_eq!(retired.verify(&new_token, 1), Ok(uid("abc")));
        // The same id with another secret is another key.
        let mut other = key("k2");
        other.secret = b"another-secret-of-at-least-32-bytes".to_vec();
        let replaced = LinkSigner::new(vec![other], 3600).unwrap();
        assert_eq!(replaced.verify(&new_token, 1), Err(LinkRefusal::Invalid));
    }

    #[test]
    fn changed_or_malformed_links_open_nothing() {
        let signer = LinkSigner::new(vec![key("k1")], 3600).unwrap();
        let (token, expires) = signer.sign(&uid("abc"), 0);
        let sig = token.rsplit('.').next().unwrap();
        for forged in [
            format!("abd.{expires}.k1.{sig}"),
            format!("abc.{}.k1.{sig}", expires + 1),
            format!("abc.0{expires}.k1.{sig}"),
            format!("abc.{expires}.k9.{sig}"),
            format!("abc.{expires}.k1.{sig}A"),
            format!("abc.{expires}.k1."),
            format!("abc.{expires}.k1"),
            format!("{token}.x"),
            format!("a/c.{expires}.k1.{sig}"),
            String::new(),
        ] {
            assert_eq!(
                signer.verify(&forged, 1),
                Err(LinkRefusal::Invalid),
                "{forged}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_flipped_byte_of_a_link_is_refused(at in 0usize..200, bit in 0u8..7) {
            let signer = LinkSigner::new(vec![key("k1")], 3600).unwrap();
            let (token, _) = signer.sign(&uid("b563feb7b2b84b6test"), 0);
            let mut bytes = token.clone().into_bytes();
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
            if let Ok(changed) = String::from_utf8(bytes)
                && changed != token
            {
                prop_assert!(signer.verify(&changed, 1).is_err(), "{changed}");
            }
        }
    }
}
