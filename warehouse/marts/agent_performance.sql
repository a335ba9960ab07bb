-- Agent performance per 15-minute UTC slot and currency: what each travel agent booked, sold and had refunded.
-- The agent's name only while the account is not deleted.
CREATE OR REPLACE TABLE mart_agent_performance AS
SELECT m.slot, m.agent_id, u.full_name AS agent_name, u.role AS agent_role, m.currency,
       sum(m.bookings)::BIGINT AS bookings, sum(m.seats)::BIGINT AS seats,
       sum(m.confirmed)::BIGINT AS confirmed, sum(m.cancelled)::BIGINT AS cancelled,
       sum(m.booked_amount)::BIGINT AS booked_amount, sum(m.gross_revenue)::BIGINT AS gross_revenue,
       sum(m.refunded_amount)::BIGINT AS refunded_amount, sum(m.net_revenue)::BIGINT AS net_revenue
FROM mart_bookings_revenue AS m
LEFT JOIN users AS u ON u.id = m.agent_id
WHERE m.agent_id IS NOT NULL
GROUP BY ALL
ORDER BY slot;
