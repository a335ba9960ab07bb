-- Accent-insensitive matching for people and places: "zurich" finds Zürich, "muller" finds Müller, "odegaard"
-- finds Ødegaard, and the other way round.
--
-- The embedded PostgreSQL (pgserver wheel) ships without contrib, so there is no unaccent(). search_fold() is our
-- own: the folded form that lookups compare, used alike on the stored side (in expression indexes) and on the
-- query side. It is a fixed table rather than normalize(..., NFKD): a Unicode upgrade of the server then cannot
-- change what an indexed value folds to, which is what IMMUTABLE promises.
--
-- What it does, in order:
--   1. drops combining marks (U+0300-U+036F), so decomposed input ("Zu" + U+0308 + "rich") folds like composed;
--   2. spells out the letters that are two letters: ß ẞ -> ss, Æ æ -> ae, Œ œ -> oe, Þ þ -> th, Ĳ ĳ -> ij;
--   3. maps every Latin letter with a diacritic to its base letter: each letter of U+00C0-U+024F and
--      U+1E00-U+1EFF whose canonical decomposition is an ASCII letter plus combining marks (Ä, é, ñ, ş, ř, ễ …),
--      and by hand those without one: Ø ø -> o, Đ đ Ð ð Ɖ ɖ -> d, Ł ł Ŀ ŀ -> l, Ħ ħ -> h, ı -> i, ĸ -> k,
--      Ŋ ŋ -> n, ſ -> s, Ŧ ŧ -> t, Ə ə -> e, Ɨ ɨ -> i, Ƶ ƶ -> z, Ɓ ɓ -> b, Ƒ ƒ -> f;
--   4. lower-cases the result.
-- The table was generated with Python's unicodedata (NFD) and is written out here so that it never changes by
-- itself.

CREATE FUNCTION search_fold(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN lower(translate(
    replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(
        regexp_replace(value, '[\u0300-\u036f]', '', 'g'),
        'ß', 'ss'), 'ẞ', 'SS'), 'Æ', 'AE'), 'æ', 'ae'), 'Œ', 'OE'), 'œ', 'oe'), 'Þ', 'TH'), 'þ', 'th'), 'Ĳ', 'IJ'),
        'ĳ', 'ij'),
    'ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝàáâãäåçèéêëìíîïðñòóôõöøùúûüýÿĀāĂăĄąĆ'
        || 'ćĈĉĊċČčĎďĐđĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĦħĨĩĪīĬĭĮįİıĴĵĶķĸĹĺĻļĽľĿŀŁłŃńŅņŇň'
        || 'ŊŋŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŦŧŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžſƁƉƏƑƒƗƠơƯưƵƶ'
        || 'ǍǎǏǐǑǒǓǔǕǖǗǘǙǚǛǜǞǟǠǡǦǧǨǩǪǫǬǭǰǴǵǸǹǺǻȀȁȂȃȄȅȆȇȈȉȊȋȌȍȎȏȐȑȒȓȔȕȖȗȘșȚțȞ'
        || 'ȟȦȧȨȩȪȫȬȭȮȯȰȱȲȳḀḁḂḃḄḅḆḇḈḉḊḋḌḍḎḏḐḑḒḓḔḕḖḗḘḙḚḛḜḝḞḟḠḡḢḣḤḥḦḧḨḩḪḫḬḭḮḯḰ'
        || 'ḱḲḳḴḵḶḷḸḹḺḻḼḽḾḿṀṁṂṃṄṅṆṇṈṉṊṋṌṍṎṏṐṑṒṓṔṕṖṗṘṙṚṛṜṝṞṟṠṡṢṣṤṥṦṧṨṩṪṫṬṭṮṯṰ'
        || 'ṱṲṳṴṵṶṷṸṹṺṻṼṽṾṿẀẁẂẃẄẅẆẇẈẉẊẋẌẍẎẏẐẑẒẓẔẕẖẗẘẙẠạẢảẤấẦầẨẩẪẫẬậẮắẰằẲẳẴẵẶ'
        || 'ặẸẹẺẻẼẽẾếỀềỂểỄễỆệỈỉỊịỌọỎỏỐốỒồỔổỖỗỘộỚớỜờỞởỠỡỢợỤụỦủỨứỪừỬửỮữỰựỲỳỴỵỶ'
        || 'ỷỸỹɓɖəɨ',
    'AAAAAACEEEEIIIIDNOOOOOOUUUUYaaaaaaceeeeiiiidnoooooouuuuyyAaAaAaC'
        || 'cCcCcCcDdDdEeEeEeEeEeGgGgGgGgHhHhIiIiIiIiIiJjKkkLlLlLlLlLlNnNnNn'
        || 'NnOoOoOoRrRrRrSsSsSsSsTtTtTtUuUuUuUuUuUuWwYyYZzZzZzsBDEFfIOoUuZz'
        || 'AaIiOoUuUuUuUuUuAaAaGgKkOoOojGgNnAaAaAaEeEeIiIiOoOoRrRrUuUuSsTtH'
        || 'hAaEeOoOoOoOoYyAaBbBbBbCcDdDdDdDdDdEeEeEeEeEeFfGgHhHhHhHhHhIiIiK'
        || 'kKkKkLlLlLlLlMmMmMmNnNnNnNnOoOoOoOoPpPpRrRrRrRrSsSsSsSsSsTtTtTtT'
        || 'tUuUuUuUuUuVvVvWwWwWwWwWwXxXxYyZzZzZzhtwyAaAaAaAaAaAaAaAaAaAaAaA'
        || 'aEeEeEeEeEeEeEeEeIiIiOoOoOoOoOoOoOoOoOoOoOoOoUuUuUuUuUuUuUuYyYyY'
        || 'yYybdei'
));

-- Airports (GET /flights/airports?q=): city and name prefixes on folded text; word prefixes on folded documents.
DROP INDEX airports_city_prefix_idx;
DROP INDEX airports_name_prefix_idx;
CREATE INDEX airports_city_prefix_idx ON airports (search_fold(city) text_pattern_ops);
CREATE INDEX airports_name_prefix_idx ON airports (search_fold(name) text_pattern_ops);

DROP INDEX airports_search_idx;
CREATE OR REPLACE FUNCTION airports_search_document(name text, city text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsvector('simple'::regconfig, regexp_replace(search_fold(name || ' ' || city), '[^[:alnum:]]+', ' ', 'g'));

CREATE OR REPLACE FUNCTION airports_search_query(query text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (
    SELECT string_agg(quote_literal(lexeme) || ':*', ' & ')::tsquery
    FROM unnest(tsvector_to_array(
        to_tsvector('simple'::regconfig, regexp_replace(search_fold(query), '[^[:alnum:]]+', ' ', 'g'))
    )) AS lexeme
);
CREATE INDEX airports_search_idx ON airports USING gin (airports_search_document(name, city));

-- Users (GET /users?q=): the word-prefix search over names and emails, folded on both sides.
DROP INDEX users_search_idx;
CREATE OR REPLACE FUNCTION users_search_document(full_name text, email text) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN to_tsvector('simple'::regconfig,
                   regexp_replace(search_fold(full_name || ' ' || email), '[^[:alnum:]]+', ' ', 'g'));

CREATE OR REPLACE FUNCTION users_search_query(query text) RETURNS tsquery
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (
    SELECT string_agg(quote_literal(lexeme) || ':*', ' & ')::tsquery
    FROM unnest(tsvector_to_array(
        to_tsvector('simple'::regconfig, regexp_replace(search_fold(query), '[^[:alnum:]]+', ' ', 'g'))
    )) AS lexeme
);
CREATE INDEX users_search_idx ON users USING gin (users_search_document(full_name, email))
    WHERE deleted_at IS NULL;

-- Passengers: manage-my-booking (GET /bookings/pnr/{pnr}?last_name=) compares folded last names.
DROP INDEX passengers_last_name_idx;
CREATE INDEX passengers_last_name_idx ON passengers (search_fold(last_name));
