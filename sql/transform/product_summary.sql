-- product_summary: how each product sells.
-- Grain: one row per product, including products never sold (zero sums, null margin_pct).
-- Inputs: products, order_items, orders, order_statuses (core tables only: it builds alongside order_totals).
--
-- Counts lines of revenue-bearing orders. Cost is the product's unit_cost times the units sold (a line
-- without a price still sold its units); null, like the margin, when the product has no unit_cost.
-- orders_count counts each order once however many of its lines hold the product: its first such line.
-- One pass over the lines: at scale 100, 13 s against 20 s for the lines less those repeating an earlier one
-- (a semi-join hashing all ten million lines). revenue_rank is rank() by revenue, highest first: products
-- with equal revenue share a rank.

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

revenue_lines as (
    select order_id, line_no, product_id, quantity, unit_price, discount
    from order_items
    where not exists (select 1 from non_revenue_orders where non_revenue_orders.order_id = order_items.order_id)
),

lines as (
    select
        product_id,
        quantity,
        line_revenue(quantity, unit_price, discount) as revenue,
        -- the product's first line in its order: an order counts once for each product it holds
        row_number() over (partition by order_id, product_id order by line_no) = 1 as is_first_in_order
    from revenue_lines
),

sold as (
    select
        product_id,
        count(*) filter (where is_first_in_order) as orders_count,
        sum(quantity) as units_sold,
        sum(revenue) as total_revenue
    from lines
    group by product_id
),

totals as (
    select
        products.product_id,
        products.product_name,
        products.category,
        coalesce(sold.units_sold, 0) as units_sold,
        coalesce(sold.orders_count, 0) as orders_count,
        coalesce(sold.total_revenue, 0) as total_revenue,
        -- unknown when the product's cost is: a margin of 100% would be a guess
        coalesce(sold.units_sold, 0) * products.unit_cost as total_cost
    from products
    left join sold on sold.product_id = products.product_id
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
