-- customer_summary: what each customer has bought, and their RFM scores and segment.
-- Grain: one row per customer, including customers with no orders (zero counts, null dates and scores).
-- Inputs: customers, order_totals, data_as_of.
--
-- Metrics count revenue-bearing orders, except cancelled_orders and returned_orders. Recency is measured
-- from the data's as-of date, so a rebuild of the same data gives the same table.
--
-- RFM scores are quintiles (ntile(5)) among customers with at least one revenue-bearing order; 5 is best.
-- Quintiles keep the five groups equal in size, so equal values can straddle a boundary. Such ties are
-- broken deliberately, by the other two measures and then by customer_id, never by chance: of two
-- customers who last bought on the same day, the one who bought more often ranks as more recent.
-- Segments follow the usual recency x frequency grid; the first rule that matches wins.

with

customers as (
    select customer_id
    from customers
),

-- not materialized: read twice, and inlined each read can run in parallel instead of spooling 5M rows
order_totals as not materialized (
    select customer_id, order_date, status, is_revenue_bearing, revenue
    from order_totals
),

as_of as (
    select as_of_date
    from data_as_of
),

customer_orders as (
    select
        customer_id,
        count(*) filter (where is_revenue_bearing) as total_orders,
        coalesce(sum(revenue) filter (where is_revenue_bearing), 0) as total_spent,
        min(order_date) filter (where is_revenue_bearing) as first_order_date,
        max(order_date) filter (where is_revenue_bearing) as last_order_date,
        count(*) filter (where status = 'cancelled') as cancelled_orders,
        count(*) filter (where status = 'returned') as returned_orders
    from order_totals
    group by customer_id
),

scores as (
    select
        customer_id,
        ntile(5) over (order by last_order_date nulls first, total_orders, total_spent, customer_id) as recency_score,
        ntile(5) over (order by total_orders, total_spent, last_order_date nulls first, customer_id) as frequency_score,
        ntile(5) over (order by total_spent, total_orders, last_order_date nulls first, customer_id) as monetary_score
    from customer_orders
    where total_orders > 0
),

final as (
    select
        customers.customer_id,
        coalesce(customer_orders.total_orders, 0) as total_orders,
        coalesce(customer_orders.total_spent, 0) as total_spent,
        round(customer_orders.total_spent / nullif(customer_orders.total_orders, 0), 2) as avg_order_value,
        customer_orders.first_order_date,
        customer_orders.last_order_date,
        as_of.as_of_date - customer_orders.last_order_date as days_since_last_order,
        coalesce(customer_orders.cancelled_orders, 0) as cancelled_orders,
        coalesce(customer_orders.returned_orders, 0) as returned_orders,
        scores.recency_score,
        scores.frequency_score,
        scores.monetary_score,
        case
            when scores.customer_id is null then 'no orders'
            when scores.recency_score >= 4 and scores.frequency_score >= 4 then 'champions'
            when scores.recency_score >= 3 and scores.frequency_score >= 3 then 'loyal'
            when scores.recency_score >= 4 and scores.frequency_score = 1 then 'new customers'
            when scores.recency_score >= 4 and scores.frequency_score = 2 then 'promising'
            when scores.recency_score = 3 then 'needs attention'
            when scores.recency_score = 1 and scores.frequency_score >= 4 then 'cannot lose them'
            when scores.frequency_score >= 3 then 'at risk'
            when scores.recency_score = 1 and scores.frequency_score = 1 then 'lost'
            else 'hibernating'
        end as rfm_segment
    from customers
    cross join as_of
    left join customer_orders on customer_orders.customer_id = customers.customer_id
    left join scores on scores.customer_id = customers.customer_id
)

select * from final
