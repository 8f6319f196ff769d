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
        row_number() over (order by total_revenue desc, product_id) as pareto_rank,
        100 * total_revenue / nullif(sum(total_revenue) over (), 0) as revenue_share_pct,
        100 * sum(total_revenue) over (order by total_revenue desc, product_id rows unbounded preceding)
            / nullif(sum(total_revenue) over (), 0) as cumulative_share_pct
    from product_summary
),

final as (
    select
        product_id,
        product_name,
        category,
        total_revenue,
        pareto_rank,
        revenue_share_pct,
        cumulative_share_pct,
        case
            when cumulative_share_pct - revenue_share_pct < 80 then 'A'
            when cumulative_share_pct - revenue_share_pct < 95 then 'B'
            else 'C'
        end as abc_class
    from ranked
)

select * from final
