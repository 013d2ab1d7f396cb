//! Issue 18, item 6 through the API: orders with lines (`OrderPlaced` version 2), refused
//! with 422 naming the line's field when a line is wrong or the lines do not add up; the
//! products a customer bought on its 360 view; `GET /v1/analytics/products` on hand-computed
//! figures, and its bad parameters named.

use std::future::Future;

use crm_api::app::Limits;
use crm_api::keys::Role;
use crm_core::money::Money;
use serde_json::{Value, json};

use crate::fixture::{App, OTHER_TENANT, TENANT};
use crate::suite::Start;

macro_rules! app {
    ($start:expr) => {
        match $start(Limits::default()).await {
            Some(app) => app,
            None => return,
        }
    };
}

fn order(customer: &str, id: &str, amount: &str, lines: Value, at: &str) -> Value {
    json!({"type": "OrderPlaced", "occurred_at": at, "data": {
        "customer_id": customer, "order_id": id, "amount": amount, "currency": "EUR", "lines": lines
    }})
}

fn line(product: &str, name: &str, quantity: u64, price: &str) -> Value {
    json!({"product_id": product, "name": name, "quantity": quantity, "unit_price": price})
}

fn eur(amount: &str) -> Value {
    serde_json::to_value(Money::parse(amount, "EUR").expect("amount")).expect("json")
}

pub async fn order_lines_give_products_on_the_360_and_the_products_report<
    F: Future<Output = Option<App>>,
>(
    start: impl Start<F>,
) {
    let app = app!(start);
    // A line's quantity of 0, and lines that do not add up: 422 naming the field, nothing
    // written.
    let bad_quantity = order(
        "c-1",
        "o-9",
        "10.00",
        json!([
            line("p-tea", "Tea", 1, "10.00"),
            line("p-mug", "Mug", 0, "5.00")
        ]),
        "2026-01-01T00:00:00Z",
    );
    app.ingest(json!([bad_quantity])).await.problem(
        422,
        &[
            "data.lines[1].quantity",
            "must be a whole number from 1 to 1000000000",
        ],
    );
    let not_adding_up = order(
        "c-1",
        "o-9",
        "20.00",
        json!([
            line("p-tea", "Tea", 2, "10.00"),
            line("p-mug", "Mug", 1, "5.00")
        ]),
        "2026-01-01T00:00:00Z",
    );
    app.ingest(json!([not_adding_up])).await.problem(
        422,
        &[
            "data.amount",
            "is 20.00 but the lines add up to 25.00; send a discount for the difference",
        ],
    );
    assert_eq!(app.head().await, 0, "nothing was written");

    let mut o3 = order(
        "c-2",
        "o-3",
        "30.00",
        json!([
            line("p-mug", "Mug", 1, "5.00"),
            line("p-pot", "Teapot", 1, "30.00")
        ]),
        "2026-01-20T00:00:00Z",
    );
    o3["data"]["discount"] = json!("5.00");
    let answer = app
        .ingest(json!([
            {"type": "CustomerRegistered", "data": {"customer_id": "c-1", "kind": "person", "name": "Ada"}},
            order(
                "c-1",
                "o-1",
                "25.00",
                json!([line("p-tea", "Tea", 2, "10.00"), line("p-mug", "Mug", 1, "5.00")]),
                "2026-01-10T00:00:00Z",
            ),
            order(
                "c-1",
                "o-2",
                "10.00",
                json!([line("p-tea", "Tea", 1, "10.00")]),
                "2026-01-15T00:00:00Z",
            ),
            o3,
        ]))
        .await;
    let last = answer.ok()["last_position"].as_u64().expect("position");

    let view = app
        .get(&format!("/v1/customers/c-1?min_position={last}"))
        .await;
    assert_eq!(
        view.ok()["products"],
        json!([
            {"product_id": "p-mug", "name": "Mug", "quantity": 1, "revenue": [eur("5.00")]},
            {"product_id": "p-tea", "name": "Tea", "quantity": 3, "revenue": [eur("30.00")]},
        ])
    );
    assert_eq!(view.body["orders"]["count"], 2);

    // N = 3 orders; orders with mug 2, tea 2, pot 1; pairs mug+tea (o-1), mug+pot (o-3).
    let report = app
        .get(&format!(
            "/v1/analytics/products?currency=EUR&min_position={last}"
        ))
        .await;
    let body = report.ok();
    assert_eq!(report.read_position, Some(last));
    assert_eq!(
        (body["orders"].clone(), body["products"].clone()),
        (json!(3), json!(3))
    );
    let product = |id: &str, name: &str, quantity: u64, orders: u64, revenue: &str| json!({"product_id": id, "name": name, "quantity": quantity, "orders": orders, "revenue": eur(revenue)});
    let (pot, tea, mug) = (
        product("p-pot", "Teapot", 1, 1, "30.00"),
        product("p-tea", "Tea", 3, 2, "30.00"),
        product("p-mug", "Mug", 2, 2, "10.00"),
    );
    // Pot and tea tie on revenue: by product id.
    assert_eq!(body["top_by_revenue"], json!([pot, tea, mug]));
    assert_eq!(body["top_by_quantity"], json!([tea, mug, pot]));
    assert_eq!(
        body["bought_together"],
        json!([
            // lift 1 × 3 / (2 × 1)
            {"product_a": "p-mug", "product_b": "p-pot", "orders_together": 1,
             "support": 1.0 / 3.0, "confidence_a_to_b": 0.5, "confidence_b_to_a": 1.0, "lift": 1.5},
            // lift 1 × 3 / (2 × 2)
            {"product_a": "p-mug", "product_b": "p-tea", "orders_together": 1,
             "support": 1.0 / 3.0, "confidence_a_to_b": 0.5, "confidence_b_to_a": 0.5, "lift": 0.75},
        ])
    );
    // A period and a limit.
    let period = app
        .get("/v1/analytics/products?currency=EUR&from=2026-01-12T00:00:00Z&to=2026-01-20T00:00:00Z&limit=1")
        .await;
    let body = period.ok();
    assert_eq!(body["orders"], 1, "o-2 only: to is excluded");
    assert_eq!(
        body["top_by_revenue"],
        json!([product("p-tea", "Tea", 1, 1, "10.00")])
    );
    assert_eq!(body["bought_together"], json!([]));
    // Another currency, another tenant: nothing.
    let usd = app.get("/v1/analytics/products?currency=USD").await;
    assert_eq!(usd.ok()["orders"], 0);
    let other = app
        .get_as(
            OTHER_TENANT,
            Role::Analyst,
            "/v1/analytics/products?currency=EUR",
        )
        .await;
    assert_eq!(other.ok()["orders"], 0);

    // Bad parameters are named.
    let bad = app.get("/v1/analytics/products?currency=XYZ").await;
    bad.problem(400, &["currency=\"XYZ\""]);
    assert_eq!(bad.body["parameter"], "currency");
    app.get("/v1/analytics/products")
        .await
        .problem(400, &["currency"]);
    let reversed = app
        .get(
            "/v1/analytics/products?currency=EUR&from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        )
        .await;
    reversed.problem(400, &["from must be before to"]);
    assert_eq!(reversed.body["parameter"], "to");
    app.get("/v1/analytics/products?currency=EUR&from=yesterday")
        .await
        .problem(400, &["from=\"yesterday\""]);
    let limit = app.get("/v1/analytics/products?currency=EUR&limit=0").await;
    limit.problem(400, &["limit=0 is out of range"]);
    assert_eq!(limit.body["parameter"], "limit");
    let min = app
        .get("/v1/analytics/products?currency=EUR&min_together=0")
        .await;
    min.problem(400, &["min_together=0"]);
    // Analysts only.
    let ingest = app
        .get_as(TENANT, Role::Ingest, "/v1/analytics/products?currency=EUR")
        .await;
    assert_eq!(ingest.status, 403);
}
