//! Who may see what: the caller (one value, whatever proved who it is), the scopes it
//! holds, and the masked forms of personal data that every representation of an order uses
//! for a caller without `pii:read`.
//!
//! Authentication is an inbound adapter's job (a bearer JWT, an API key, or the operator's
//! explicit choice of anonymous access); what a caller may do and see is decided here, so the
//! JSON API, the pages and the lists cannot disagree.

use std::fmt;
use std::sync::Arc;

use super::browse::{Field, OrderSummary, RejectionRecord, Search};
use super::order::Order;

/// One permission. The names are the ones tokens, keys and settings use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One order by uid (masked unless `pii:read`).
    OrdersRead,
    /// The newest list, and searches by track number, transaction and customer id.
    OrdersSearch,
    /// Personal data unmasked wherever another scope shows the order; with
    /// `orders:search`, searches by phone and e-mail.
    PiiRead,
    /// Dead-letter records.
    RejectionsRead,
    /// The audit trail.
    AuditRead,
    /// Signed links to one order, for its customer (shown masked, no sign-in).
    LinksCreate,
}

impl Scope {
    /// Every scope, in the order the docs list them.
    pub const ALL: [Scope; 6] = [
        Self::OrdersRead,
        Self::OrdersSearch,
        Self::PiiRead,
        Self::RejectionsRead,
        Self::AuditRead,
        Self::LinksCreate,
    ];

    /// Its name, such as `orders:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrdersRead => "orders:read",
            Self::OrdersSearch => "orders:search",
            Self::PiiRead => "pii:read",
            Self::RejectionsRead => "rejections:read",
            Self::AuditRead => "audit:read",
            Self::LinksCreate => "links:create",
        }
    }

    /// The scope this name means, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope at all.
    pub const NONE: Scopes = Scopes(0);

    /// Every scope.
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Whether `scope` is in the set.
    pub fn has(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Both sets together.
    pub fn union(self, other: Scopes) -> Scopes {
        Scopes(self.0 | other.0)
    }

    /// The set without `scope`.
    pub fn difference(self, scope: Scope) -> Scopes {
        Scopes(self.0 & !scope.bit())
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// A list of scope names separated by commas or white space (`all` is every scope);
    /// an unknown name is an error naming it.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        let mut scopes = Scopes::NONE;
        for name in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
        {
            if name == "all" {
                scopes = scopes.union(Scopes::all());
                continue;
            }
            let scope = Scope::parse(name).ok_or_else(|| {
                format!(
                    "unknown scope {:?}: the scopes are {} (or all)",
                    name.chars().take(64).collect::<String>(),
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })?;
            scopes = scopes.union(scope.into());
        }
        Ok(scopes)
    }

    /// The scopes among `names` that this service knows; others are ignored (a token
    /// carries the scopes of every API it is meant for).
    pub fn known<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        names.into_iter().filter_map(Scope::parse).collect()
    }

    /// The names, in the docs' order.
    pub fn names(self) -> Vec<&'static str> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.has(*s))
            .map(Scope::as_str)
            .collect()
    }
}

impl From<Scope> for Scopes {
    fn from(s: Scope) -> Self {
        Scopes(s.bit())
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        iter.into_iter()
            .fold(Scopes::NONE, |acc, s| acc.union(s.into()))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(" "))
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Nothing: the operator allowed anonymous access.
    Anonymous,
    /// An API key of ours.
    ApiKey,
    /// A bearer token signed by the identity provider.
    Token,
    /// A web session, opened by signing in at the identity provider.
    Session,
}

impl Via {
    /// Its name in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::ApiKey => "api_key",
            Self::Token => "token",
            Self::Session => "session",
        }
    }
}

/// Who is asking, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The subject: a token's `sub`, a key's name, or `anonymous`.
    pub subject: Arc<str>,
    /// The client program a token was issued to (`azp` or `client_id`), when it says.
    pub client: Option<Arc<str>>,
    /// How it proved who it is.
    pub via: Via,
    /// What it may do.
    pub scopes: Scopes,
}

/// A caller lacks the scope an action needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this needs the scope {needs}")]
pub struct Forbidden {
    /// The scope it needs (the first one missing).
    pub needs: Scope,
}

impl Caller {
    /// Nobody in particular, with what the operator grants everyone.
    pub fn anonymous(scopes: Scopes) -> Self {
        Self {
            subject: "anonymous".into(),
            client: None,
            via: Via::Anonymous,
            scopes,
        }
    }

    /// Whether it holds `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.has(scope)
    }

    /// `Ok` when it holds every one of `scopes`, else the first missing.
    pub fn require(&self, scopes: &[Scope]) -> Result<(), Forbidden> {
        match scopes.iter().find(|s| !self.may(**s)) {
            Some(needs) => Err(Forbidden { needs: *needs }),
            None => Ok(()),
        }
    }

    /// Whether it sees personal data unmasked.
    pub fn sees_pii(&self) -> bool {
        self.may(Scope::PiiRead)
    }

    /// May it run `search`? Listing needs `orders:search`; a named phone or e-mail also
    /// `pii:read`. A search box value (`q`) is tried only as what the caller may search by:
    /// without `pii:read` its phone and e-mail readings are dropped, and a value that can
    /// only be a phone or an e-mail is refused.
    pub fn may_search(&self, search: &mut Search) -> Result<(), Forbidden> {
        self.require(&[Scope::OrdersSearch])?;
        if self.sees_pii() {
            return Ok(());
        }
        let personal = |f: Field| matches!(f, Field::Phone | Field::Email);
        if search.all.iter().any(|c| personal(c.field)) {
            return Err(Forbidden {
                needs: Scope::PiiRead,
            });
        }
        let before = search.any.len();
        search.any.retain(|c| !personal(c.field));
        if before > 0 && search.any.is_empty() {
            return Err(Forbidden {
                needs: Scope::PiiRead,
            });
        }
        Ok(())
    }
}

/// What stands for hidden characters in a masked value.
pub const MASK: &str = "•••";

/// A phone masked as support recognises it: `+972•••0000` (the country code's first digits
/// and the last four).
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() < 9 {
        let head: String = chars.iter().take(2).collect();
        return format!("{head}{MASK}");
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{MASK}{tail}")
}

/// An e-mail masked: `t•••@gmail.com` (the first character and the domain).
pub fn mask_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}{MASK}@{domain}")
        }
        None => MASK.to_owned(),
    }
}

/// A name as its initials: `Test Testov` → `T. T.`.
pub fn initials(name: &str) -> String {
    let initials: Vec<String> = name
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .filter(|c| c.is_alphanumeric())
        .map(|c| format!("{}.", c.to_uppercase()))
        .collect();
    if initials.is_empty() {
        MASK.to_owned()
    } else {
        initials.join(" ")
    }
}

/// A value hidden whole (an empty one stays empty: there is nothing to hide).
fn hidden(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        MASK.to_owned()
    }
}

impl Order {
    /// The order as a caller without `pii:read` sees it: name as initials, phone and e-mail
    /// masked, address, zip and the payment's transaction and request id hidden; city,
    /// region, amounts and items as they are.
    pub fn masked(&self) -> Order {
        let mut o = self.clone();
        let d = &mut o.delivery;
        d.name = initials(&d.name);
        d.phone = mask_phone(&d.phone);
        d.email = mask_email(&d.email);
        d.address = hidden(&d.address);
        d.zip = hidden(&d.zip);
        o.payment.transaction = hidden(&o.payment.transaction);
        o.payment.request_id = hidden(&o.payment.request_id);
        o
    }
}

impl Order {
    /// The order as its customer sees it through a link anyone holding it may open: what
    /// was bought and what it cost, and nothing that finds or reaches a person (no name,
    /// phone, e-mail, address, zip, city, region; no transaction, request id or customer
    /// id). Masked with the same marks as [`Order::masked`].
    pub fn for_customer(&self) -> Order {
        let mut o = self.masked();
        let d = &mut o.delivery;
        d.name = MASK.to_owned();
        d.phone = MASK.to_owned();
        d.email = MASK.to_owned();
        d.city = MASK.to_owned();
        d.region = MASK.to_owned();
        o.customer_id = MASK.to_owned();
        o
    }
}

impl OrderSummary {
    /// The summary without personal data: the name as initials.
    pub fn masked(mut self) -> Self {
        self.name = initials(&self.name);
        self
    }
}

/// A rejection's detail with every quoted part (`"…"` or `` `…` ``) replaced: a detail
/// built from a parser's message may quote the payload's values or an unknown key's name,
/// which a producer chooses, so none of it reaches a person. The field paths and the
/// rule's words stay.
pub fn redact_detail(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len());
    let mut open: Option<char> = None;
    for c in detail.chars() {
        match open {
            Some(q) if c == q => {
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    out.push_str(MASK);
                    open = Some(c);
                }
            }
        }
    }
    out
}

impl RejectionRecord {
    /// The record as every caller sees it: the detail redacted ([`redact_detail`]).
    pub fn shown(mut self) -> Self {
        self.detail = redact_detail(&self.detail);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_from_lists_and_refuse_unknown_names() {
        let s = Scopes::parse_list("orders:read, pii:read").unwrap();
        assert!(s.has(Scope::OrdersRead) && s.has(Scope::PiiRead));
        assert!(!s.has(Scope::OrdersSearch));
        assert_eq!(Scopes::parse_list("all").unwrap(), Scopes::all());
        assert_eq!(Scopes::parse_list("").unwrap(), Scopes::NONE);
        let e = Scopes::parse_list("orders:read orders:write").unwrap_err();
        assert!(e.contains("orders:write"), "{e}");
        assert_eq!(
            Scopes::known(["openid", "orders:search", "email"]),
            Scope::OrdersSearch.into()
        );
        assert_eq!(s.to_string(), "orders:read pii:read");
    }

    #[test]
    fn personal_data_is_masked_as_support_recognises_it() {
        assert_eq!(mask_phone("+9720000000"), "+972•••0000");
        assert_eq!(mask_phone("+12"), "+1•••");
        assert_eq!(mask_email("test@gmail.com"), "t•••@gmail.com");
        assert_eq!(mask_email("nobody"), "•••");
        assert_eq!(initials("Test Testov"), "T. T.");
        assert_eq!(initials("  "), "•••");
        assert_eq!(initials("ñandú  élan"), "Ñ. É.");
    }

    #[test]
    fn a_masked_order_keeps_nothing_personal() {
        let json = include_bytes!("../../tests/data/model.json");
        let order: Order = serde_json::from_slice(json).unwrap();
        let masked = order.masked();
        let text = String::from_utf8(masked.to_json()).unwrap();
        for personal in [
            "Test Testov",
            "+9720000000",
            "test@gmail.com",
            "Ploshad Mira",
            "2639809",
        ] {
            assert!(!text.contains(personal), "{personal} in {text}");
        }
        assert_eq!(masked.payment.transaction, MASK);
        assert_eq!(masked.payment.request_id, "", "nothing to hide");
        assert_eq!(masked.delivery.city, "Kiryat Mozkin");
        assert_eq!(masked.items, order.items);
        assert_eq!(masked.payment.amount, order.payment.amount);
    }

    #[test]
    fn details_lose_every_quoted_part() {
        assert_eq!(
            redact_detail(r#"invalid type: string "165", expected i64 at line 1"#),
            r#"invalid type: string "•••", expected i64 at line 1"#
        );
        assert_eq!(
            redact_detail("unknown field `Call +1 900 555 0100`, expected one of `a`"),
            "unknown field `•••`, expected one of `•••`"
        );
        assert_eq!(
            redact_detail("delivery.phone: must be an E.164 phone number"),
            "delivery.phone: must be an E.164 phone number"
        );
        assert_eq!(redact_detail(r#"open "quote never closed"#), r#"open "•••"#);
    }

    fn caller(list: &str) -> Caller {
        Caller::anonymous(Scopes::parse_list(list).unwrap())
    }

    #[test]
    fn searching_by_phone_or_email_needs_pii_read() {
        let phone = Search::guess("+9720000000").unwrap();
        // Without pii:read a phone in the search box is tried only as a customer id.
        let mut as_customer = phone.clone();
        caller("orders:search")
            .may_search(&mut as_customer)
            .unwrap();
        assert!(as_customer.any.iter().all(|c| c.field == Field::CustomerId));
        assert!(
            caller("orders:search pii:read")
                .may_search(&mut phone.clone())
                .is_ok()
        );
        assert_eq!(
            caller("orders:read").may_search(&mut Search::default()),
            Err(Forbidden {
                needs: Scope::OrdersSearch
            })
        );
        // An e-mail-looking value is also a customer id: searched as that alone.
        let mut email = Search::guess("a@b.example").unwrap();
        caller("orders:search").may_search(&mut email).unwrap();
        assert!(email.any.iter().all(|c| c.field == Field::CustomerId));
        assert!(!email.any.is_empty());
        let mut named = Search::default();
        named.all.push(super::super::browse::Criterion {
            field: Field::Email,
            value: "a@b.example".into(),
        });
        assert!(caller("orders:search").may_search(&mut named).is_err());
    }
}
