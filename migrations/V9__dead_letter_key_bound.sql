-- A dead letter's key is kept whole only up to 256 bytes: a longer one (any size a producer
-- sends) is kept as its first 256 bytes and the SHA-256 of the whole, enough to recognise
-- it; the key itself stays in the dead-letter topic. New rows only: old ones are as they were.
ALTER TABLE dead_letters ADD COLUMN message_key_sha256 bytea
    CHECK (message_key_sha256 IS NULL OR length(message_key_sha256) = 32);
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_key_bounded
    CHECK (length(message_key) <= 256) NOT VALID;
