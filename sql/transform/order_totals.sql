-- order_totals: one row per order, with what it is worth.
-- Grain: one row per order in core (every status).
-- Inputs: orders, order_items, order_statuses, data_as_of.
--
-- An order bears revenue when order_statuses says its status does (placed, shipped, delivered); an unknown
-- or missing status does not. A line is worth line_revenue(...) (sql/schema/05_line_revenue.sql); a line
-- missing its quantity or price is worth nothing known, so it adds nothing.
-- An order's date is its timestamp's date in the session's time zone; without a timestamp, it has none.
-- The as-of rule: an order dated after the data's as-of date has no date either (it counts in customer and
-- product totals, in no day or month), and is flagged, for validation to report.

with

orders as (
    select order_id, customer_id, order_ts, status
    from orders
),

order_statuses as (
    select status, is_revenue_bearing
    from order_statuses
),

order_items as (
    select order_id, quantity, unit_price, discount
    from order_items
),

as_of as (
    select as_of_date
    from data_as_of
),

lines as (
    select
        order_id,
        coalesce(sum(quantity), 0) as units,
        coalesce(sum(line_revenue(quantity, unit_price, discount)), 0) as revenue
    from order_items
    group by order_id
),

final as (
    select
        orders.order_id,
        orders.customer_id,
        orders.order_ts,
        case when orders.order_ts::date <= coalesce(as_of.as_of_date, 'infinity') then orders.order_ts::date end
            as order_date,
        coalesce(orders.order_ts::date > as_of.as_of_date, false) as is_after_as_of,
        orders.status,
        coalesce(order_statuses.is_revenue_bearing, false) as is_revenue_bearing,
        coalesce(lines.units, 0) as units,
        coalesce(lines.revenue, 0) as revenue
    from orders
    cross join as_of
    left join order_statuses on order_statuses.status = orders.status
    left join lines on lines.order_id = orders.order_id
)

select * from final
