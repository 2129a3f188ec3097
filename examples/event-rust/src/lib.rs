//! A CloudEvents function: takes an order event (binary or structured mode) and replies with an
//! `order.processed` event carrying the total; events of other types are accepted without a reply.

use serde::{Deserialize, Serialize};
use wasmfn_sdk::event::data_json;
use wasmfn_sdk::{AttributesReader, CloudEvent, EventBuilder, EventBuilderV10, Result};

#[derive(Deserialize)]
struct Order {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    price: f64,
    quantity: u32,
}

#[derive(Serialize)]
struct Processed {
    order: String,
    total: f64,
}

#[wasmfn_sdk::event]
fn on_order(event: CloudEvent) -> Result<Option<CloudEvent>> {
    if event.ty() != "dev.wasmfn.order.created" {
        return Ok(None);
    }
    let order: Order = data_json(&event)?;
    let total = order.items.iter().map(|i| i.price * i.quantity as f64).sum();
    let reply = EventBuilderV10::new()
        .id(format!("{}-processed", event.id()))
        .ty("dev.wasmfn.order.processed")
        .source(format!("/wasmfn/{}", wasmfn_sdk::function().name))
        .subject(event.id())
        .data("application/json", serde_json::to_value(Processed { order: event.id().to_string(), total })?)
        .build()?;
    Ok(Some(reply))
}
