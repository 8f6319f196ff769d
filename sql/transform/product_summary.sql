-- product_summary: how each product sells.
-- Grain: one row per product, including products never sold (zero sums, null margin_pct).
-- Inputs: products, order_items, orders, order_statuses (core tables only: it builds alongside order_totals).
--
-- Counts lines of revenue-bearing orders. Cost is the product's unit_cost times the units sold (a line
-- without a price still sold its units); null, like the margin, when the product has no unit_cost.
-- orders_count is the product's lines less those repeating it within an order: the same number as
-- count(distinct order_id), without sorting ten million lines. revenue_rank is rank() by revenue, highest
-- first: products with equal revenue share a rank.

with

products as (
    select product_id, product_name, category, unit_cost
    from products
),

-- An anti-join against the few orders that bear no revenue is much cheaper than a join with all the others.
non_revenue_orders as (
    select order_id
    from orders
    where not exists (
        select 1 from order_statuses
        where order_statuses.status = orders.status and order_statuses.is_revenue_bearing
    )
),

-- not materialized: read twice, and inlined each read can run in parallel instead of spooling 10M rows
revenue_lines as not materialized (
    select order_id, line_no, product_id, quantity, unit_price, discount
    from order_items
    where not exists (select 1 from non_revenue_orders where non_revenue_orders.order_id = order_items.order_id)
),

sold as (
    select
        product_id,
        count(*) as lines,
        sum(quantity) as units_sold,
        sum(line_revenue(quantity, unit_price, discount)) as total_revenue
    from revenue_lines
    group by product_id
),

repeats as (
    select product_id, count(*) as repeated_lines
    from revenue_lines
    where exists (
        select 1 from order_items as earlier
        where earlier.order_id = revenue_lines.order_id
            and earlier.product_id = revenue_lines.product_id
            and earlier.line_no < revenue_lines.line_no
    )
    group by product_id
),

totals as (
    select
        products.product_id,
        products.product_name,
        products.category,
        coalesce(sold.units_sold, 0) as units_sold,
        coalesce(sold.lines - coalesce(repeats.repeated_lines, 0), 0) as orders_count,
        coalesce(sold.total_revenue, 0) as total_revenue,
        -- unknown when the product's cost is: a margin of 100% would be a guess
        coalesce(sold.units_sold, 0) * products.unit_cost as total_cost
    from products
    left join sold on sold.product_id = products.product_id
    left join repeats on repeats.product_id = products.product_id
),

final as (
    select
        product_id,
        product_name,
        category,
        units_sold,
        orders_count,
        total_revenue,
        total_cost,
        total_revenue - total_cost as total_margin,
        round(100 * (total_revenue - total_cost) / nullif(total_revenue, 0), 2) as margin_pct,
        rank() over (order by total_revenue desc) as revenue_rank
    from totals
)

select * from final
