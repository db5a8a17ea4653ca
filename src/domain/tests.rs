//! Unit tests of the order model and its rules. No I/O beyond reading the
//! canonical order shipped in `tests/data/model.json`.

use super::order::{Order, OrderUid};
use super::validate::{Consistency, RejectReason, Rejection, accept, check, decode};

const LIMIT: usize = 1024 * 1024;
const CANONICAL: &str = include_str!("../../tests/data/model.json");

fn canonical() -> Order {
    decode(CANONICAL.as_bytes(), LIMIT).expect("the canonical order decodes")
}

/// The paths of the broken rules after `mutate`, or empty when the order is accepted.
fn broken(mutate: impl FnOnce(&mut Order)) -> Vec<String> {
    let mut order = canonical();
    mutate(&mut order);
    match check(order, Consistency::Warn) {
        Ok(_) => Vec::new(),
        Err(r) => {
            assert_eq!(r.reason, RejectReason::Invalid, "{r}");
            r.errors.into_iter().map(|e| e.path).collect()
        }
    }
}

fn assert_edge(path: &str, ok: impl FnOnce(&mut Order), bad: impl FnOnce(&mut Order)) {
    assert_eq!(
        broken(ok),
        Vec::<String>::new(),
        "the edge of {path} must pass"
    );
    assert_eq!(
        broken(bad),
        vec![path.to_owned()],
        "just past the edge of {path} must fail"
    );
}

fn raw_rejection(raw: &[u8]) -> Rejection {
    accept(raw, LIMIT, Consistency::Reject).expect_err("must be rejected")
}

#[test]
fn canonical_order_is_accepted_and_round_trips_to_the_same_json() {
    let checked = check(canonical(), Consistency::Reject).expect("canonical order is valid");
    assert!(checked.warnings().is_empty(), "{:?}", checked.warnings());
    assert_eq!(checked.uid().as_str(), "b563feb7b2b84b6test");
    let back: serde_json::Value = serde_json::from_slice(checked.json()).unwrap();
    let original: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    assert_eq!(back, original);
}

#[test]
fn identifiers_are_alphanumeric_and_at_most_64_characters() {
    assert_edge(
        "order_uid",
        |o| o.order_uid = "a".repeat(64),
        |o| o.order_uid = "a".repeat(65),
    );
    assert_edge(
        "order_uid",
        |o| o.order_uid = "A1".into(),
        |o| o.order_uid = "a-1".into(),
    );
    assert_edge(
        "order_uid",
        |o| o.order_uid = "x".into(),
        |o| o.order_uid.clear(),
    );
    assert_edge("track_number", |_| {}, |o| o.track_number = "WB IL".into());
    assert_edge(
        "payment.transaction",
        |_| {},
        |o| o.payment.transaction = "tx_1".into(),
    );
    assert_edge("items[0].rid", |_| {}, |o| o.items[0].rid = "é1".into());
    assert_edge(
        "items[0].track_number",
        |_| {},
        |o| o.items[0].track_number.clear(),
    );
}

#[test]
fn uid_newtype_holds_only_valid_uids() {
    assert!(OrderUid::parse("b563feb7b2b84b6test").is_ok());
    assert!(OrderUid::parse("").is_err());
    assert!(OrderUid::parse("a".repeat(65)).is_err());
    assert!(OrderUid::parse("../etc").is_err());
}

#[test]
fn required_texts_must_not_be_blank() {
    assert_edge("entry", |o| o.entry = "W".into(), |o| o.entry = "  ".into());
    assert_edge("customer_id", |_| {}, |o| o.customer_id.clear());
    assert_edge("delivery_service", |_| {}, |o| o.delivery_service.clear());
    assert_edge("delivery.name", |_| {}, |o| o.delivery.name.clear());
    assert_edge("delivery.city", |_| {}, |o| o.delivery.city.clear());
    assert_edge("delivery.address", |_| {}, |o| o.delivery.address.clear());
    assert_edge("delivery.region", |_| {}, |o| o.delivery.region.clear());
    assert_edge("payment.provider", |_| {}, |o| o.payment.provider.clear());
    assert_edge("payment.bank", |_| {}, |o| o.payment.bank.clear());
    assert_edge("items[0].name", |_| {}, |o| o.items[0].name.clear());
    assert_edge("items[0].size", |_| {}, |o| o.items[0].size.clear());
    assert_edge("items[0].brand", |_| {}, |o| o.items[0].brand.clear());
}

#[test]
fn request_id_and_internal_signature_may_be_empty() {
    assert!(
        broken(|o| {
            o.payment.request_id.clear();
            o.internal_signature.clear();
        })
        .is_empty()
    );
}

#[test]
fn numeric_strings_hold_only_digits() {
    assert_edge(
        "shardkey",
        |o| o.shardkey = "0".into(),
        |o| o.shardkey = "9a".into(),
    );
    assert_edge(
        "oof_shard",
        |o| o.oof_shard = "10".into(),
        |o| o.oof_shard.clear(),
    );
    assert_edge(
        "delivery.zip",
        |_| {},
        |o| o.delivery.zip = "26398-09".into(),
    );
}

#[test]
fn phone_is_e164() {
    assert_edge(
        "delivery.phone",
        |o| o.delivery.phone = "+12".into(),
        |o| o.delivery.phone = "+1".into(),
    );
    assert_edge(
        "delivery.phone",
        |o| o.delivery.phone = format!("+1{}", "2".repeat(14)),
        |o| o.delivery.phone = format!("+1{}", "2".repeat(15)),
    );
    assert_edge(
        "delivery.phone",
        |_| {},
        |o| o.delivery.phone = "+0720000000".into(),
    );
    assert_edge(
        "delivery.phone",
        |_| {},
        |o| o.delivery.phone = "9720000000".into(),
    );
}

#[test]
fn email_locale_and_currency_follow_their_standards() {
    assert_edge(
        "delivery.email",
        |o| o.delivery.email = "a@b.co".into(),
        |o| o.delivery.email = "a.b.co".into(),
    );
    assert_edge(
        "locale",
        |o| o.locale = "pt-BR".into(),
        |o| o.locale = "pt_BR".into(),
    );
    assert_edge(
        "locale",
        |o| o.locale = "zh-Hant-TW".into(),
        |o| o.locale.clear(),
    );
    assert_edge(
        "payment.currency",
        |o| o.payment.currency = "EUR".into(),
        |o| o.payment.currency = "usd".into(),
    );
    assert_edge(
        "payment.currency",
        |_| {},
        |o| o.payment.currency = "XYZ".into(),
    );
}

#[test]
fn money_and_counts_have_their_bounds() {
    assert_edge("sm_id", |o| o.sm_id = 1, |o| o.sm_id = 0);
    assert_edge(
        "payment.amount",
        |o| o.payment.amount = 0,
        |o| o.payment.amount = -1,
    );
    assert_edge(
        "payment.payment_dt",
        |o| o.payment.payment_dt = 1,
        |o| o.payment.payment_dt = 0,
    );
    assert_edge(
        "payment.goods_total",
        |o| o.payment.goods_total = 1,
        |o| o.payment.goods_total = 0,
    );
    assert_edge(
        "payment.delivery_cost",
        |o| o.payment.delivery_cost = 0,
        |o| o.payment.delivery_cost = -1,
    );
    assert_edge(
        "payment.custom_fee",
        |o| o.payment.custom_fee = 0,
        |o| o.payment.custom_fee = -1,
    );
    assert_edge(
        "items[0].chrt_id",
        |o| o.items[0].chrt_id = 1,
        |o| o.items[0].chrt_id = 0,
    );
    assert_edge(
        "items[0].price",
        |o| o.items[0].price = 0,
        |o| o.items[0].price = -1,
    );
    assert_edge(
        "items[0].sale",
        |o| o.items[0].sale = 100,
        |o| o.items[0].sale = 101,
    );
    assert_edge(
        "items[0].sale",
        |o| o.items[0].sale = 0,
        |o| o.items[0].sale = -1,
    );
    assert_edge(
        "items[0].total_price",
        |o| o.items[0].total_price = 0,
        |o| o.items[0].total_price = -1,
    );
    assert_edge(
        "items[0].nm_id",
        |o| o.items[0].nm_id = 1,
        |o| o.items[0].nm_id = 0,
    );
    assert_edge(
        "items[0].status",
        |o| o.items[0].status = -1,
        |o| o.items[0].status = 0,
    );
}

#[test]
fn an_order_needs_at_least_one_item() {
    assert_eq!(broken(|o| o.items.clear()), vec!["items"]);
}

#[test]
fn every_broken_rule_is_reported_with_its_path() {
    let paths = broken(|o| {
        o.delivery.phone = "12".into();
        let mut second = o.items[0].clone();
        second.sale = 101;
        o.items.push(second.clone());
        second.nm_id = 0;
        o.items.push(second);
        o.sm_id = 0;
    });
    assert_eq!(
        paths,
        vec![
            "delivery.phone",
            "items[1].sale",
            "items[2].nm_id",
            "items[2].sale",
            "sm_id"
        ]
    );
}

#[test]
fn totals_that_do_not_add_up_are_rejected_or_warned_as_configured() {
    let mut order = canonical();
    order.items[0].total_price = 318; // 453 less 30 % is 317.1, rounded down to 317
    let rejection = check(order.clone(), Consistency::Reject).unwrap_err();
    assert_eq!(rejection.reason, RejectReason::Inconsistent);
    let paths: Vec<_> = rejection.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["items[0].total_price", "payment.goods_total"]);

    let accepted = check(order, Consistency::Warn).expect("warn accepts");
    assert_eq!(accepted.warnings().len(), 2);

    let mut order = canonical();
    order.payment.amount += 1;
    let rejection = check(order, Consistency::Reject).unwrap_err();
    assert_eq!(rejection.errors[0].path, "payment.amount");
}

#[test]
fn field_errors_and_inconsistencies_are_reported_together_under_reject() {
    let mut order = canonical();
    order.sm_id = 0;
    order.payment.amount = 5;
    let rejection = check(order, Consistency::Reject).unwrap_err();
    assert_eq!(rejection.reason, RejectReason::Invalid);
    let paths: Vec<_> = rejection.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["sm_id", "payment.amount"]);
}

#[test]
fn wrong_shape_is_a_schema_error_with_the_path() {
    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value["items"][0]["price"] = "453".into();
    let r = raw_rejection(&serde_json::to_vec(&value).unwrap());
    assert_eq!(
        (r.reason, r.errors[0].path.as_str()),
        (RejectReason::Schema, "items[0].price")
    );

    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value["extra"] = 1.into();
    let r = raw_rejection(&serde_json::to_vec(&value).unwrap());
    assert_eq!(r.reason, RejectReason::Schema);
    assert_eq!(r.errors[0].code, "unknown_field", "{r}");

    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value["date_created"] = "26.11.2021".into();
    let r = raw_rejection(&serde_json::to_vec(&value).unwrap());
    assert_eq!(
        (r.reason, r.errors[0].path.as_str()),
        (RejectReason::Schema, "date_created")
    );

    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value["payment"]["amount"] = serde_json::json!(u64::MAX);
    let r = raw_rejection(&serde_json::to_vec(&value).unwrap());
    assert_eq!(
        (r.reason, r.errors[0].path.as_str()),
        (RejectReason::Schema, "payment.amount")
    );
}

#[test]
fn a_rejection_never_repeats_what_the_producer_wrote() {
    let words = "Call +1 900 555 0100 to release your parcel";
    let mut cases = Vec::new();
    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value[words] = 1.into();
    cases.push(value);
    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value["delivery"][words] = 1.into();
    cases.push(value);
    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value["items"][0]["price"] = words.into();
    cases.push(value);
    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value["date_created"] = words.into();
    cases.push(value);
    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value["items"] = serde_json::json!({ words: words });
    cases.push(value);
    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value["payment"]["amount"] = serde_json::json!([words]);
    cases.push(value);
    for value in cases {
        let r = raw_rejection(&serde_json::to_vec(&value).unwrap());
        let detail = r.detail();
        assert_eq!(r.reason, RejectReason::Schema, "{detail}");
        for part in ["Call", "900", "parcel"] {
            assert!(!detail.contains(part), "{detail}");
        }
    }
    // Not JSON at all: serde's syntax messages name places, not contents.
    let r = raw_rejection(format!("{{\"order_uid\": \"{words}\" ").as_bytes());
    assert!(!r.detail().contains("parcel"), "{}", r.detail());
}

#[test]
fn bytes_that_are_not_one_json_order_are_malformed() {
    for raw in [&b""[..], b"  ", b"\xff\xfe", b"{\"order_uid\":", b"[1,2]x"] {
        assert_eq!(
            raw_rejection(raw).reason,
            RejectReason::Malformed,
            "{raw:?}"
        );
    }
    let trailing = format!("{CANONICAL} {{}}");
    assert_eq!(
        raw_rejection(trailing.as_bytes()).reason,
        RejectReason::Malformed
    );
}

#[test]
fn messages_over_the_limit_are_too_large() {
    let r = accept(CANONICAL.as_bytes(), CANONICAL.len() - 1, Consistency::Warn).unwrap_err();
    assert_eq!(r.reason, RejectReason::TooLarge);
    assert!(accept(CANONICAL.as_bytes(), CANONICAL.len(), Consistency::Warn).is_ok());
}

#[test]
fn date_created_is_normalized_to_utc() {
    let json = CANONICAL.replace("2021-11-26T06:22:19Z", "2021-11-26T09:22:19+03:00");
    let checked = accept(json.as_bytes(), LIMIT, Consistency::Reject).unwrap();
    let back: serde_json::Value = serde_json::from_slice(checked.json()).unwrap();
    assert_eq!(back["date_created"], "2021-11-26T06:22:19Z");
}

#[test]
fn content_hash_tells_same_content_from_different_content() {
    let a = canonical();
    let mut b = canonical();
    assert_eq!(a.content_hash(), b.content_hash());
    b.items[0].size = "1".into();
    assert_ne!(a.content_hash(), b.content_hash());
}

#[test]
fn email_and_locale_accept_only_what_the_database_checks_accept() {
    for bad in [
        "a@b c[127.0.0.1]",
        "a\u{a0}b@c.de",
        "a@b@c.de",
        "a@b.c\u{7}",
    ] {
        assert_edge(
            "delivery.email",
            |o| o.delivery.email = "first.last+tag@example.co".into(),
            |o| o.delivery.email = bad.into(),
        );
    }
    for bad in ["x--", "en-", "-en", "en--US", "e1"] {
        assert_edge(
            "locale",
            |o| o.locale = "en-US".into(),
            |o| o.locale = bad.into(),
        );
    }
}

#[test]
fn no_string_may_hold_a_nul_character() {
    type Mutation = fn(&mut Order);
    let fields: [(&str, Mutation); 16] = [
        ("entry", |o| o.entry.push('\0')),
        ("internal_signature", |o| o.internal_signature = "\0".into()),
        ("customer_id", |o| o.customer_id.push('\0')),
        ("delivery_service", |o| o.delivery_service.push('\0')),
        ("delivery.name", |o| o.delivery.name.push('\0')),
        ("delivery.city", |o| o.delivery.city.push('\0')),
        ("delivery.address", |o| o.delivery.address.push('\0')),
        ("delivery.region", |o| o.delivery.region.push('\0')),
        ("delivery.email", |o| o.delivery.email.push('\0')),
        ("payment.request_id", |o| o.payment.request_id = "\0".into()),
        ("payment.provider", |o| o.payment.provider.push('\0')),
        ("payment.bank", |o| o.payment.bank.push('\0')),
        ("items[0].name", |o| o.items[0].name.push('\0')),
        ("items[0].size", |o| o.items[0].size.push('\0')),
        ("items[0].brand", |o| o.items[0].brand.push('\0')),
        ("locale", |o| o.locale.push('\0')),
    ];
    for (path, bad) in fields {
        assert_eq!(broken(bad), vec![path.to_owned()], "{path}");
    }
    // Empty is still fine where it was.
    assert!(broken(|o| o.internal_signature.clear()).is_empty());
}

fn with_date(date: &str) -> Result<String, Rejection> {
    let mut value: serde_json::Value = serde_json::from_str(CANONICAL).unwrap();
    value["date_created"] = date.into();
    let checked = accept(value.to_string().as_bytes(), LIMIT, Consistency::Reject)?;
    let back: serde_json::Value = serde_json::from_slice(checked.json()).unwrap();
    Ok(back["date_created"].as_str().unwrap().to_owned())
}

#[test]
fn date_created_stays_within_years_1_to_9999_in_utc() {
    assert_eq!(
        with_date("0001-01-01T00:00:00Z").unwrap(),
        "0001-01-01T00:00:00Z"
    );
    assert_eq!(
        with_date("9999-12-31T23:59:59.999999Z").unwrap(),
        "9999-12-31T23:59:59.999999Z"
    );
    for bad in [
        "0000-12-31T23:59:59Z",
        "0001-01-01T00:00:00+00:01",
        "9999-12-31T23:59:59-23:59",
    ] {
        let r = with_date(bad).expect_err(bad);
        assert_eq!(r.errors[0].path, "date_created", "{bad}: {r}");
        assert_eq!(r.errors[0].code, "date_range", "{bad}: {r}");
    }
}

#[test]
fn leap_seconds_are_refused_and_nanoseconds_cut_to_microseconds() {
    let r = with_date("2016-12-31T23:59:60Z").expect_err("a leap second");
    assert_eq!(r.errors[0].code, "leap_second", "{r}");
    assert_eq!(
        with_date("2021-11-26T06:22:19.123456789Z").unwrap(),
        "2021-11-26T06:22:19.123456Z"
    );
    assert_eq!(
        with_date("2021-11-26T06:22:19.1234+01:00").unwrap(),
        "2021-11-26T05:22:19.123400Z"
    );
    assert_eq!(
        with_date("2021-11-26T06:22:19.000000001Z").unwrap(),
        "2021-11-26T06:22:19Z"
    );
}

#[test]
fn free_text_has_a_bound_in_characters() {
    let with = |f: &dyn Fn(&mut Order)| {
        let mut order = canonical();
        f(&mut order);
        check(order, Consistency::Warn)
    };
    assert!(
        with(&|o| o.delivery.name = "é".repeat(256)).is_ok(),
        "256 characters"
    );
    for (path, change) in [
        (
            "delivery.name",
            &(|o: &mut Order| o.delivery.name = "é".repeat(257)) as &dyn Fn(&mut Order),
        ),
        ("delivery.city", &|o: &mut Order| {
            o.delivery.city = "x".repeat(1 << 20)
        }),
        ("delivery.address", &|o: &mut Order| {
            o.delivery.address = "x".repeat(257)
        }),
        ("customer_id", &|o: &mut Order| {
            o.customer_id = "x".repeat(257)
        }),
        ("internal_signature", &|o: &mut Order| {
            o.internal_signature = "x".repeat(257)
        }),
        ("delivery.zip", &|o: &mut Order| {
            o.delivery.zip = "9".repeat(33)
        }),
        ("delivery.email", &|o: &mut Order| {
            o.delivery.email = format!("{}@example.com", "a".repeat(243))
        }),
    ] {
        let r = with(change).unwrap_err();
        assert!(
            r.errors
                .iter()
                .any(|e| e.path == path && e.code == "too_long"),
            "{path}: {r}"
        );
    }
}

/// The `(path, code)` of each broken rule after `mutate`, under `consistency`.
fn codes(consistency: Consistency, mutate: impl FnOnce(&mut Order)) -> Vec<(String, String)> {
    let mut order = canonical();
    mutate(&mut order);
    match check(order, consistency) {
        Ok(_) => Vec::new(),
        Err(r) => r.errors.into_iter().map(|e| (e.path, e.code)).collect(),
    }
}

#[test]
fn each_broken_rule_is_named_by_its_stable_code() {
    type Mutation = fn(&mut Order);
    let cases: [(&str, &str, Mutation); 9] = [
        ("delivery.phone", "phone", |o| {
            o.delivery.phone = "+97a0000000".into()
        }),
        ("delivery.phone", "phone", |o| o.delivery.phone = "+".into()),
        ("delivery.email", "email", |o| {
            o.delivery.email = "nobody".into()
        }),
        ("delivery.name", "empty", |o| o.delivery.name = " ".into()),
        ("delivery.name", "too_long", |o| {
            o.delivery.name = "n".repeat(257)
        }),
        ("delivery.city", "nul", |o| o.delivery.city = "a\0b".into()),
        ("shardkey", "not_numeric", |o| o.shardkey = "9a".into()),
        ("order_uid", "not_alphanumeric", |o| {
            o.order_uid = "a-b".into()
        }),
        ("items", "no_items", |o| o.items.clear()),
    ];
    for (path, code, mutate) in cases {
        assert_eq!(
            codes(Consistency::Warn, mutate),
            vec![(path.to_owned(), code.to_owned())],
            "{path} {code}"
        );
    }
    // No items is one broken rule even when totals are checked: the items' sum is not
    // compared with goods_total when there are none to sum.
    assert_eq!(
        codes(Consistency::Reject, |o| o.items.clear()),
        vec![("items".to_owned(), "no_items".to_owned())]
    );
}

#[test]
fn bytes_that_are_no_order_are_named_by_what_they_are() {
    let code = |raw: &[u8]| {
        let r = raw_rejection(raw);
        (r.reason, r.errors[0].code.clone(), r.errors[0].path.clone())
    };
    let whole = |reason, code: &str| (reason, code.to_owned(), String::new());
    assert_eq!(code(b""), whole(RejectReason::Malformed, "empty"));
    assert_eq!(code(b" \n\t"), whole(RejectReason::Malformed, "empty"));
    assert_eq!(
        code(b"{\"a\":\"\xff\"}"),
        whole(RejectReason::Malformed, "not_utf8")
    );
    assert_eq!(
        code(b"{\"order_uid\":"),
        whole(RejectReason::Malformed, "not_json")
    );
    let r = accept(CANONICAL.as_bytes(), CANONICAL.len() - 1, Consistency::Warn).unwrap_err();
    assert_eq!(
        (r.reason, r.errors[0].code.as_str()),
        (RejectReason::TooLarge, "too_large")
    );
}

#[test]
fn length_bounds_take_the_bound_itself_and_refuse_one_more() {
    use crate::domain::rules::{MAX_DIGITS, MAX_EMAIL_CHARS, email, numeric};
    // 64 + 1 + 189: a local part and domain labels within the address rule's own limits.
    let domain = format!(
        "{}.{}.{}.co",
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(58)
    );
    let longest = format!("{}@{domain}", "a".repeat(64));
    assert_eq!(longest.len(), MAX_EMAIL_CHARS);
    assert!(
        email(&longest).is_ok(),
        "{MAX_EMAIL_CHARS} characters are taken"
    );
    let over = format!("{}@d{domain}", "a".repeat(64));
    assert_eq!(email(&over).unwrap_err().code, "too_long");
    assert!(numeric(&"7".repeat(MAX_DIGITS)).is_ok());
    assert_eq!(
        numeric(&"7".repeat(MAX_DIGITS + 1)).unwrap_err().code,
        "too_long"
    );
}

#[test]
fn a_locale_needs_every_part_plain_not_only_the_first() {
    use crate::domain::rules::locale;
    for bad in ["x--", "en-", "en--US", "en-U$"] {
        assert_eq!(locale(bad).unwrap_err().code, "locale", "{bad}");
    }
    assert!(locale("en-US").is_ok());
}

#[test]
fn consistency_reads_and_writes_its_two_names_and_names_a_bad_one() {
    for (name, value) in [("reject", Consistency::Reject), ("warn", Consistency::Warn)] {
        assert_eq!(name.parse::<Consistency>().unwrap(), value);
        assert_eq!(value.to_string(), name);
    }
    let err = "Warn".parse::<Consistency>().unwrap_err();
    assert!(
        err.contains("`Warn`") && err.contains("`reject` or `warn`"),
        "{err}"
    );
}

#[test]
fn a_rejections_text_names_its_reason_and_every_path_and_message() {
    let mut order = canonical();
    order.delivery.phone = "12".into();
    order.payment.currency = "usd".into();
    let bytes = serde_json::to_vec(&order).unwrap();
    let r = accept(&bytes, 1 << 20, Consistency::Warn).unwrap_err();
    let detail = r.detail();
    assert!(
        detail.contains("delivery.phone: must be an E.164 phone number")
            && detail.contains("; ")
            && detail.contains("payment.currency: must be an ISO 4217"),
        "{detail}"
    );
    assert_eq!(r.to_string(), format!("invalid: {detail}"));
    assert_eq!(RejectReason::Invalid.to_string(), "invalid");
    let whole = raw_rejection(b"");
    assert!(!whole.detail().is_empty() && !whole.detail().starts_with(':'));
}
