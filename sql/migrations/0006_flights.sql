-- Flight resources: the airport lookup's indexes.
--
-- GET /flights/airports?q= ranks airports whose code, city or name starts with the query, then those with a word
-- of the name or city starting with it ("heath" finds London Heathrow). City and name prefixes are served by
-- airports_city_prefix_idx / airports_name_prefix_idx (0001). The code needs its own pattern index: the primary
-- key's btree follows the database collation, which LIKE 'AB%' can only use under the C collation. Word prefixes
-- use full-text search with prefix matching (the built-in parser, as pg_trgm is not in the embedded server).

CREATE INDEX airports_code_prefix_idx ON airports (code text_pattern_ops);

-- Document and query are normalised alike: anything that is not a letter or digit separates words.
CREATE FUNCTION airports_search_document(name text, city text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsvector('simple'::regconfig, regexp_replace(name || ' ' || city, '[^[:alnum:]]+', ' ', 'g'));

-- Every word of the query as a prefix, all required: 'san fr' -> 'san':* & 'fr':*. NULL (matching nothing) when the
-- query has no letter or digit. Lexemes are letters and digits only, so quoting them is safe.
CREATE FUNCTION airports_search_query(query text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (
    SELECT string_agg(quote_literal(lexeme) || ':*', ' & ')::tsquery
    FROM unnest(tsvector_to_array(
        to_tsvector('simple'::regconfig, regexp_replace(query, '[^[:alnum:]]+', ' ', 'g'))
    )) AS lexeme
);

CREATE INDEX airports_search_idx ON airports USING gin (airports_search_document(name, city));
