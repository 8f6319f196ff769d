-- What an order line is worth: quantity x unit_price - discount, a missing discount counting as none; null
-- when the quantity or the price is missing. The one place that says so: the models that count revenue
-- (order_totals, product_summary) call it. An SQL function of one expression, so the planner inlines it.

create or replace function line_revenue(quantity integer, unit_price numeric, discount numeric)
returns numeric
language sql
immutable
parallel safe
return quantity * unit_price - coalesce(discount, 0);
