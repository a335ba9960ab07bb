-- Users administration: word-prefix search over names and emails, the admin list's order, live-user lookups.
--
-- Search is full-text with prefix matching on every word ("smi" finds "John Smith" and "smith.j@example.com"),
-- served by a GIN index. pg_trgm would allow arbitrary substrings, but the embedded PostgreSQL (pgserver wheel)
-- ships without contrib, so the built-in text search is what every installation has. Document and query are
-- normalised by the same function pair: anything that is not a letter or digit separates words, so the parser's
-- special tokens (emails, hosts, hyphenated words) cannot make a query and a document disagree.

CREATE FUNCTION users_search_document(full_name text, email text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsvector('simple'::regconfig, regexp_replace(full_name || ' ' || email, '[^[:alnum:]]+', ' ', 'g'));

-- Every word of the query as a prefix, all required: 'ann smi' -> 'ann':* & 'smi':*. NULL when the query has no
-- letter or digit (which then matches nothing). Lexemes are letters and digits only, so quoting them is safe.
CREATE FUNCTION users_search_query(query text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (
    SELECT string_agg(quote_literal(lexeme) || ':*', ' & ')::tsquery
    FROM unnest(tsvector_to_array(
        to_tsvector('simple'::regconfig, regexp_replace(query, '[^[:alnum:]]+', ' ', 'g'))
    )) AS lexeme
);

CREATE INDEX users_search_idx ON users USING gin (users_search_document(full_name, email))
    WHERE deleted_at IS NULL;

-- GET /users lists live users newest first, ties broken by id.
CREATE INDEX users_live_created_idx ON users (created_at DESC, id) WHERE deleted_at IS NULL;

-- The last-admin check counts live, active admins.
CREATE INDEX users_active_admins_idx ON users (id) WHERE role = 'ADMIN' AND is_active AND deleted_at IS NULL;
