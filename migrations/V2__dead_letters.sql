-- Messages already sent to the dead-letter topic, so that a replay (a new consumer group, a
-- batch retried after a crash) does not send them again. The payload hash keeps a topic that
-- was deleted and created again, whose offsets restart, from passing for the old one.
CREATE TABLE dead_letters (
    topic        text        NOT NULL,
    partition    integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    payload_hash bytea       NOT NULL,
    reason       text        NOT NULL,
    detail       text        NOT NULL,
    sent_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset", payload_hash)
);
