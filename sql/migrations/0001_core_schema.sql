-- Core schema: reference data, inventory, bookings, payments, identity, audit, messaging.
-- Money is integer minor units plus an ISO 4217 currency; every time is timestamptz.
-- The invariants the product depends on are enforced here, not only in code.

-- Reference data ---------------------------------------------------------------------------------

CREATE TABLE airlines (
    code        text PRIMARY KEY CHECK (code ~ '^[A-Z0-9]{2}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    country     text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE airports (
    code        text PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    name        text NOT NULL,
    city        text NOT NULL,
    country     text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    tz          text NOT NULL,
    latitude    double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude   double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180)
);
-- Prefix search over code, city and name (GET /flights/airports?q=).
CREATE INDEX airports_city_prefix_idx ON airports (lower(city) text_pattern_ops);
CREATE INDEX airports_name_prefix_idx ON airports (lower(name) text_pattern_ops);

-- Identity ---------------------------------------------------------------------------------------

CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email           text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    password_hash   text NOT NULL,
    full_name       text NOT NULL CHECK (length(full_name) BETWEEN 1 AND 200),
    phone           text CHECK (length(phone) <= 32),
    role            text NOT NULL DEFAULT 'CUSTOMER'
                    CHECK (role IN ('CUSTOMER', 'TRAVEL_AGENT', 'AIRLINE_AGENT', 'BUSINESS_OWNER', 'ADMIN')),
    airline_code    text REFERENCES airlines (code),
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_login_at   timestamptz,
    deleted_at      timestamptz,
    -- An airline agent always belongs to an airline; nobody else does.
    CONSTRAINT users_airline_agent_has_airline CHECK ((role = 'AIRLINE_AGENT') = (airline_code IS NOT NULL))
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_role_idx ON users (role);
CREATE INDEX users_airline_code_idx ON users (airline_code);
CREATE INDEX users_created_at_idx ON users (created_at);
CREATE INDEX users_full_name_idx ON users (lower(full_name) text_pattern_ops);

CREATE TABLE sessions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id),
    family_id       uuid NOT NULL UNIQUE,
    ip              inet,
    user_agent      text CHECK (length(user_agent) <= 512),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoke_reason   text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE refresh_tokens (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id),
    family_id       uuid NOT NULL REFERENCES sessions (family_id),
    token_hash      bytea NOT NULL UNIQUE,
    issued_at       timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    spent_at        timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX refresh_tokens_user_id_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);

CREATE TABLE blacklisted_tokens (
    jti         uuid PRIMARY KEY,
    user_id     uuid REFERENCES users (id),
    expires_at  timestamptz NOT NULL,
    reason      text NOT NULL DEFAULT 'logout',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX blacklisted_tokens_user_id_idx ON blacklisted_tokens (user_id);
CREATE INDEX blacklisted_tokens_expires_at_idx ON blacklisted_tokens (expires_at);

CREATE TABLE password_reset_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id),
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX password_reset_tokens_user_id_idx ON password_reset_tokens (user_id);

-- Inventory --------------------------------------------------------------------------------------

CREATE TABLE flights (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    airline_code    text NOT NULL REFERENCES airlines (code),
    flight_number   text NOT NULL CHECK (flight_number ~ '^[A-Z0-9]{2}[0-9]{1,4}$'),
    origin          text NOT NULL REFERENCES airports (code),
    destination     text NOT NULL REFERENCES airports (code),
    departure_at    timestamptz NOT NULL,
    arrival_at      timestamptz NOT NULL,
    aircraft        text NOT NULL,
    status          text NOT NULL DEFAULT 'SCHEDULED'
                    CHECK (status IN ('SCHEDULED', 'DELAYED', 'CANCELLED', 'DEPARTED', 'ARRIVED')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT flights_distinct_airports CHECK (origin <> destination),
    CONSTRAINT flights_arrives_after_departure CHECK (arrival_at > departure_at),
    CONSTRAINT flights_number_of_airline CHECK (left(flight_number, 2) = airline_code),
    CONSTRAINT flights_one_departure_per_number UNIQUE (flight_number, departure_at)
);
-- The search path: origin, destination and a departure window.
CREATE INDEX flights_route_departure_idx ON flights (origin, destination, departure_at);
CREATE INDEX flights_destination_idx ON flights (destination);
CREATE INDEX flights_airline_departure_idx ON flights (airline_code, departure_at);
CREATE INDEX flights_departure_at_idx ON flights (departure_at);

-- Fare buckets: the inventory row a booking locks.
CREATE TABLE flight_prices (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flight_id       bigint NOT NULL REFERENCES flights (id) ON DELETE CASCADE,
    cabin           text NOT NULL CHECK (cabin IN ('ECONOMY', 'PREMIUM_ECONOMY', 'BUSINESS', 'FIRST')),
    fare_class      text NOT NULL CHECK (fare_class ~ '^[A-Z]$'),
    price_amount    bigint NOT NULL CHECK (price_amount >= 0),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    seats_total     integer NOT NULL CHECK (seats_total >= 0),
    seats_available integer NOT NULL,
    refundable      boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT flight_prices_seats_in_range CHECK (seats_available >= 0 AND seats_available <= seats_total),
    CONSTRAINT flight_prices_one_bucket UNIQUE (flight_id, cabin, fare_class)
);

-- The seat map of each flight.
-- Keyed by (flight, seat number): the natural key is the only index a seat map needs besides its holder's.
CREATE TABLE seats (
    flight_id   bigint NOT NULL REFERENCES flights (id) ON DELETE CASCADE,
    seat_no     text NOT NULL CHECK (seat_no ~ '^[0-9]{1,2}[A-K]$'),
    cabin       text NOT NULL CHECK (cabin IN ('ECONOMY', 'PREMIUM_ECONOMY', 'BUSINESS', 'FIRST')),
    row_no      smallint NOT NULL CHECK (row_no BETWEEN 1 AND 99),
    features    text[] NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'HELD', 'OCCUPIED', 'BLOCKED')),
    booking_id  uuid,
    CONSTRAINT seats_pkey PRIMARY KEY (flight_id, seat_no),
    CONSTRAINT seats_held_by_booking CHECK ((status IN ('HELD', 'OCCUPIED')) = (booking_id IS NOT NULL))
);
CREATE INDEX seats_booking_id_idx ON seats (booking_id) WHERE booking_id IS NOT NULL;

-- Bookings ---------------------------------------------------------------------------------------

CREATE TABLE bookings (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- 6 characters from A-Z 2-9 without the look-alikes I, L, O (and 0, 1).
    pnr             text NOT NULL UNIQUE CHECK (pnr ~ '^[A-HJKMNP-Z2-9]{6}$'),
    flight_id       bigint NOT NULL REFERENCES flights (id),
    fare_id         bigint NOT NULL REFERENCES flight_prices (id),
    cabin           text NOT NULL CHECK (cabin IN ('ECONOMY', 'PREMIUM_ECONOMY', 'BUSINESS', 'FIRST')),
    fare_class      text NOT NULL CHECK (fare_class ~ '^[A-Z]$'),
    customer_id     uuid REFERENCES users (id),
    agent_id        uuid REFERENCES users (id),
    created_by      uuid REFERENCES users (id),
    status          text NOT NULL DEFAULT 'PENDING_PAYMENT'
                    CHECK (status IN ('PENDING_PAYMENT', 'CONFIRMED', 'CANCELLED', 'EXPIRED')),
    -- Seats taken from the fare bucket (infants on a lap take none).
    seat_count      integer NOT NULL CHECK (seat_count BETWEEN 1 AND 9),
    total_amount    bigint NOT NULL CHECK (total_amount >= 0),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    contact_email   text NOT NULL CHECK (length(contact_email) BETWEEN 3 AND 320),
    contact_phone   text CHECK (length(contact_phone) <= 32),
    hold_expires_at timestamptz NOT NULL,
    confirmed_at    timestamptz,
    cancelled_at    timestamptz,
    expired_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE seats ADD CONSTRAINT seats_booking_id_fkey FOREIGN KEY (booking_id) REFERENCES bookings (id);
CREATE INDEX bookings_flight_id_idx ON bookings (flight_id);
CREATE INDEX bookings_fare_id_idx ON bookings (fare_id);
CREATE INDEX bookings_customer_id_idx ON bookings (customer_id, created_at DESC);
CREATE INDEX bookings_agent_id_idx ON bookings (agent_id, created_at DESC);
CREATE INDEX bookings_created_by_idx ON bookings (created_by);
CREATE INDEX bookings_status_idx ON bookings (status);
CREATE INDEX bookings_created_at_idx ON bookings (created_at);
CREATE INDEX bookings_updated_at_idx ON bookings (updated_at);
-- The expiry sweep reads only live holds.
CREATE INDEX bookings_live_holds_idx ON bookings (hold_expires_at) WHERE status = 'PENDING_PAYMENT';

CREATE TABLE passengers (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    booking_id      uuid NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    flight_id       bigint NOT NULL REFERENCES flights (id),
    first_name      text NOT NULL CHECK (length(first_name) BETWEEN 1 AND 100),
    last_name       text NOT NULL CHECK (length(last_name) BETWEEN 1 AND 100),
    date_of_birth   date NOT NULL,
    type            text NOT NULL CHECK (type IN ('ADULT', 'CHILD', 'INFANT')),
    -- Travel document, AES-256-GCM encrypted (key version prefixed).
    document_enc    bytea,
    seat_no         text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT passengers_infant_has_no_seat CHECK (type <> 'INFANT' OR seat_no IS NULL)
);
CREATE INDEX passengers_booking_id_idx ON passengers (booking_id);
CREATE INDEX passengers_flight_id_idx ON passengers (flight_id);
CREATE INDEX passengers_last_name_idx ON passengers (lower(last_name));
-- One passenger per seat per flight; a released seat is set back to NULL.
CREATE UNIQUE INDEX passengers_one_per_seat ON passengers (flight_id, seat_no) WHERE seat_no IS NOT NULL;

-- Payments ---------------------------------------------------------------------------------------

CREATE TABLE payments (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    booking_id          uuid NOT NULL REFERENCES bookings (id),
    provider            text NOT NULL CHECK (provider IN ('sandbox', 'stripe')),
    provider_payment_id text UNIQUE,
    status              text NOT NULL DEFAULT 'REQUIRES_PAYMENT'
                        CHECK (status IN ('REQUIRES_PAYMENT', 'PROCESSING', 'SUCCEEDED', 'FAILED',
                                          'PARTIALLY_REFUNDED', 'REFUNDED', 'CANCELLED')),
    amount              bigint NOT NULL CHECK (amount > 0),
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount_refunded     bigint NOT NULL DEFAULT 0,
    -- Provider secrets (client secret), AES-256-GCM encrypted with a versioned key.
    client_secret_enc   bytea,
    failure_code        text,
    failure_message     text,
    created_by          uuid REFERENCES users (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    succeeded_at        timestamptz,
    CONSTRAINT payments_refund_within_amount CHECK (amount_refunded >= 0 AND amount_refunded <= amount)
);
CREATE INDEX payments_booking_id_idx ON payments (booking_id);
CREATE INDEX payments_created_by_idx ON payments (created_by);
CREATE INDEX payments_status_idx ON payments (status);
CREATE INDEX payments_created_at_idx ON payments (created_at);
CREATE INDEX payments_updated_at_idx ON payments (updated_at);
-- One succeeded payment per booking (refunds keep it the one that succeeded).
CREATE UNIQUE INDEX payments_one_succeeded_per_booking ON payments (booking_id)
    WHERE status IN ('SUCCEEDED', 'PARTIALLY_REFUNDED', 'REFUNDED');

CREATE TABLE refunds (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    payment_id          uuid NOT NULL REFERENCES payments (id),
    booking_id          uuid NOT NULL REFERENCES bookings (id),
    amount              bigint NOT NULL CHECK (amount > 0),
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status              text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    reason              text CHECK (length(reason) <= 500),
    provider_refund_id  text UNIQUE,
    created_by          uuid REFERENCES users (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment_id_idx ON refunds (payment_id);
CREATE INDEX refunds_booking_id_idx ON refunds (booking_id);
CREATE INDEX refunds_created_by_idx ON refunds (created_by);
CREATE INDEX refunds_created_at_idx ON refunds (created_at);
CREATE INDEX refunds_updated_at_idx ON refunds (updated_at);

CREATE TABLE webhook_events (
    id              text PRIMARY KEY,
    provider        text NOT NULL,
    type            text NOT NULL,
    payload         jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    error           text
);
CREATE INDEX webhook_events_received_at_idx ON webhook_events (received_at);

CREATE TABLE idempotency_keys (
    -- Keys are scoped to the caller, so two users can never collide.
    owner_id        uuid NOT NULL REFERENCES users (id),
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    method          text NOT NULL,
    path            text NOT NULL,
    request_hash    bytea NOT NULL,
    status_code     integer,
    response_body   bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (owner_id, key)
);
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

-- Messaging --------------------------------------------------------------------------------------

CREATE TABLE notifications (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid REFERENCES users (id),
    booking_id      uuid REFERENCES bookings (id),
    -- The outbox event that caused it, so a replayed event sends nothing twice.
    event_id        uuid UNIQUE,
    template        text NOT NULL CHECK (template IN ('booking_confirmation', 'booking_cancelled', 'payment_receipt',
                                                      'payment_failed', 'password_reset', 'welcome',
                                                      'booking_reminder', 'flight_changed', 'custom')),
    channel         text NOT NULL DEFAULT 'email' CHECK (channel IN ('email')),
    recipient       text NOT NULL,
    subject         text NOT NULL,
    priority        smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9),
    status          text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SENT', 'FAILED', 'CANCELLED')),
    attempts        smallint NOT NULL DEFAULT 0,
    last_error      text,
    payload         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX notifications_user_id_idx ON notifications (user_id, created_at DESC);
CREATE INDEX notifications_booking_id_idx ON notifications (booking_id);
CREATE INDEX notifications_status_idx ON notifications (status);
CREATE INDEX notifications_created_at_idx ON notifications (created_at);

-- Transactional outbox: written in the transaction of the change it announces.
CREATE TABLE outbox_events (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    event_type      text NOT NULL,
    aggregate_type  text NOT NULL,
    aggregate_id    text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text
);
CREATE INDEX outbox_events_unpublished_idx ON outbox_events (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_events_aggregate_idx ON outbox_events (aggregate_type, aggregate_id);
CREATE INDEX outbox_events_created_at_idx ON outbox_events (created_at);

-- Wake the outbox relay as soon as events commit (it also polls, in case a notification is missed).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_events', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
