-- Every free-text field has a bound (src/domain/rules.rs: MAX_TEXT_CHARS, MAX_DIGITS,
-- MAX_EMAIL_CHARS), mirrored here like every other rule, so that what the gate accepts the
-- database stores and nothing larger gets in by another way. NOT VALID: rows stored before
-- the bound stay readable; every new row is checked.
ALTER TABLE orders
    ADD CONSTRAINT orders_text_bounded CHECK (
        char_length(entry) <= 256 AND char_length(internal_signature) <= 256
        AND char_length(customer_id) <= 256 AND char_length(delivery_service) <= 256
        AND length(shardkey) <= 32 AND length(oof_shard) <= 32) NOT VALID;
ALTER TABLE deliveries
    ADD CONSTRAINT deliveries_text_bounded CHECK (
        char_length(name) <= 256 AND char_length(city) <= 256 AND char_length(address) <= 256
        AND char_length(region) <= 256 AND length(zip) <= 32
        AND char_length(email) <= 254) NOT VALID;
ALTER TABLE payments
    ADD CONSTRAINT payments_text_bounded CHECK (
        char_length(request_id) <= 256 AND char_length(provider) <= 256
        AND char_length(bank) <= 256) NOT VALID;
ALTER TABLE items
    ADD CONSTRAINT items_text_bounded CHECK (
        char_length(name) <= 256 AND char_length(size) <= 256
        AND char_length(brand) <= 256) NOT VALID;
