-- product_abc: Pareto (ABC) classes of products by their share of revenue.
-- Grain: one row per product.
-- Inputs: product_summary.
--
-- Products are ranked by revenue, highest first (ties by product_id). Class A holds the products that
-- together make the first 80% of revenue, B the next 15%, C the rest. A product belongs to the class in
-- which its revenue starts: the product that crosses 80% is still A. Shares are of total revenue, so they
-- add up to 100%.

with

product_summary as (
    select product_id, product_name, category, total_revenue
    from product_summary
),

ranked as (
    select
        product_id,
        product_name,
        category,
        total_revenue,
        row_number() over by_revenue as pareto_rank,
        coalesce(sum(total_revenue) over (by_revenue rows between unbounded preceding and 1 preceding), 0)
            as revenue_before,
        sum(total_revenue) over (by_revenue rows unbounded preceding) as revenue_through,
        sum(total_revenue) over () as revenue_total
    from product_summary
    window by_revenue as (order by total_revenue desc, product_id)
),

final as (
    select
        product_id,
        product_name,
        category,
        total_revenue,
        pareto_rank,
        100 * total_revenue / nullif(revenue_total, 0) as revenue_share_pct,
        100 * revenue_through / nullif(revenue_total, 0) as cumulative_share_pct,
        -- exact sums, not the rounded percentages: a product starting at exactly 80% is B
        case
            when 100 * revenue_before < 80 * revenue_total then 'A'
            when 100 * revenue_before < 95 * revenue_total then 'B'
            else 'C'
        end as abc_class
    from ranked
)

select * from final
