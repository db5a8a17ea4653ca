//! A producer that speaks the Kafka protocol itself, for bytes rdkafka's API cannot send: a
//! header name that is not UTF-8 (Go and Java clients allow any bytes there). One Produce
//! request (v3, one record batch of magic 2), sent to the test broker, which leads every
//! partition.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One record as it goes on the wire.
pub struct RawRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// Sends `records` to `topic`'s `partition` in one batch and checks the broker took it.
pub async fn produce_raw(topic: &str, partition: i32, records: &[RawRecord<'_>]) {
    let brokers = crate::kafka::brokers();
    let addr = brokers.split(',').next().unwrap().to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();

    let batch = record_batch(records);
    let mut body = Vec::new();
    put_i16(&mut body, 0); // api key: Produce
    put_i16(&mut body, 3); // version
    put_i32(&mut body, 1); // correlation id
    put_str(&mut body, b"order-svc-test-wire");
    put_i16(&mut body, -1); // transactional id: null
    put_i16(&mut body, -1); // acks: all
    put_i32(&mut body, 10_000); // timeout ms
    put_i32(&mut body, 1); // topics
    put_str(&mut body, topic.as_bytes());
    put_i32(&mut body, 1); // partitions
    put_i32(&mut body, partition);
    put_i32(&mut body, batch.len() as i32);
    body.extend_from_slice(&batch);

    let mut frame = Vec::new();
    put_i32(&mut frame, body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.unwrap();

    let size = stream.read_i32().await.unwrap() as usize;
    let mut reply = vec![0; size];
    stream.read_exact(&mut reply).await.unwrap();
    // correlation id (4), topics (4), name (2 + n), partitions (4), index (4), error code (2)
    let name_len = i16::from_be_bytes([reply[8], reply[9]]) as usize;
    let at = 10 + name_len + 4 + 4;
    let error = i16::from_be_bytes([reply[at], reply[at + 1]]);
    assert_eq!(
        error, 0,
        "the broker refused the raw produce (Kafka error {error})"
    );
}

fn record_batch(records: &[RawRecord<'_>]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Everything the CRC covers: from the attributes to the end.
    let mut tail = Vec::new();
    put_i16(&mut tail, 0); // attributes: no compression
    put_i32(&mut tail, records.len() as i32 - 1); // last offset delta
    put_i64(&mut tail, now);
    put_i64(&mut tail, now);
    put_i64(&mut tail, -1); // producer id
    put_i16(&mut tail, -1); // producer epoch
    put_i32(&mut tail, -1); // base sequence
    put_i32(&mut tail, records.len() as i32);
    for (i, r) in records.iter().enumerate() {
        let mut rec = Vec::new();
        rec.push(0); // attributes
        put_varint(&mut rec, 0); // timestamp delta
        put_varint(&mut rec, i as i64); // offset delta
        put_varbytes(&mut rec, r.key);
        put_varbytes(&mut rec, r.value);
        put_varint(&mut rec, r.headers.len() as i64);
        for (name, value) in &r.headers {
            put_varbytes(&mut rec, Some(name));
            put_varbytes(&mut rec, *value);
        }
        put_varint(&mut tail, rec.len() as i64);
        tail.extend_from_slice(&rec);
    }
    let mut after_length = Vec::new();
    put_i32(&mut after_length, -1); // partition leader epoch
    after_length.push(2); // magic
    after_length.extend_from_slice(&crc32c(&tail).to_be_bytes());
    after_length.extend_from_slice(&tail);
    let mut batch = Vec::new();
    put_i64(&mut batch, 0); // base offset
    put_i32(&mut batch, after_length.len() as i32);
    batch.extend_from_slice(&after_length);
    batch
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_i16(out, s.len() as i16);
    out.extend_from_slice(s);
}
fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}
fn put_varbytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

#[test]
fn crc32c_matches_the_standard_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}
