//! The demo org: three customer accounts, their sites and the equipment a
//! field technician would scan a QR code on. Created through the normal
//! write path in a fixed order with a fixed clock, so ids and timestamps are
//! identical on every fresh start.

use serde_json::{Map, Value, json};

use crate::describe;
use crate::dml::{self, WriteCtx};
use crate::ids;
use crate::state::Store;

pub const SEED_TIME: &str = "2026-01-05T09:00:00.000+0000";

pub struct SeedAccount {
    pub name: &'static str,
    pub city: &'static str,
    pub phone: &'static str,
    pub industry: &'static str,
}

pub struct SeedAsset {
    pub name: &'static str,
    pub serial: &'static str,
    /// Index into `ACCOUNTS`.
    pub account: usize,
    pub location: &'static str,
    pub status: &'static str,
    pub install_date: &'static str,
}

pub const ACCOUNTS: &[SeedAccount] = &[
    SeedAccount {
        name: "Northwind Logistics",
        city: "Columbus",
        phone: "+1 614 555 0142",
        industry: "Transportation",
    },
    SeedAccount {
        name: "Harbor View Medical Center",
        city: "Portland",
        phone: "+1 503 555 0187",
        industry: "Healthcare",
    },
    SeedAccount {
        name: "Greenfield Foods Co.",
        city: "Fresno",
        phone: "+1 559 555 0110",
        industry: "Manufacturing",
    },
];

pub const ASSETS: &[SeedAsset] = &[
    SeedAsset {
        name: "Rooftop HVAC Unit 3",
        serial: "HVC-3-2291-A",
        account: 0,
        location: "Building B roof",
        status: "Installed",
        install_date: "2021-06-14",
    },
    SeedAsset {
        name: "Forklift Charger Bank 2",
        serial: "FCB-2-7710-C",
        account: 0,
        location: "Warehouse 2 charging bay",
        status: "Installed",
        install_date: "2022-03-02",
    },
    SeedAsset {
        name: "Water-Cooled Chiller CH-1",
        serial: "CHL-1-0458-T",
        account: 1,
        location: "Central plant, level B1",
        status: "Installed",
        install_date: "2019-09-23",
    },
    SeedAsset {
        name: "Backup Diesel Generator G2",
        serial: "GEN-2-5530-K",
        account: 1,
        location: "Generator yard, north side",
        status: "Registered",
        install_date: "2020-11-30",
    },
    SeedAsset {
        name: "Blast Freezer Compressor 1",
        serial: "BFC-1-3307-R",
        account: 2,
        location: "Cold storage hall 1",
        status: "Installed",
        install_date: "2023-01-17",
    },
];

/// The demo org's work types (Field Service): what a work order's
/// `WorkTypeId` can point at.
pub const WORK_TYPES: &[(&str, &str)] = &[
    ("Repair", "Fix a fault found on site."),
    ("Inspection", "Check condition and safety; no repair."),
    (
        "Preventive Maintenance",
        "Scheduled service to prevent faults.",
    ),
    ("Installation", "Install or commission equipment."),
];

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Fills an empty store with the demo org.
pub fn seed(store: &mut Store) {
    let ctx = WriteCtx {
        rules: &[],
        now: SEED_TIME,
    };
    let create = |store: &mut Store, name: &str, body: Value| {
        let o = describe::object(name).expect("seeded objects are described");
        dml::create(store, o, obj(body), None, &ctx).expect("seed data satisfies the schema")
    };
    let accounts: Vec<String> = ACCOUNTS
        .iter()
        .map(|a| {
            create(
                store,
                "Account",
                json!({"Name": a.name, "BillingCity": a.city, "Phone": a.phone, "Industry": a.industry}),
            )
        })
        .collect();
    let locations: Vec<String> = ASSETS
        .iter()
        .map(|a| create(store, "Location", json!({"Name": a.location})))
        .collect();
    for (a, location) in ASSETS.iter().zip(&locations) {
        create(
            store,
            "Asset",
            json!({
                "Name": a.name,
                "SerialNumber": a.serial,
                "Status": a.status,
                "InstallDate": a.install_date,
                "AccountId": accounts[a.account],
                "LocationId": location,
            }),
        );
    }
    add_work_types(store);
}

/// Adds the demo work types to an org that has none: a fresh one, or one
/// saved before the emulator knew Field Service (its data is kept). Returns
/// whether it added them.
pub fn add_work_types(store: &mut Store) -> bool {
    if store.table("WorkType").next().is_some() {
        return false;
    }
    let ctx = WriteCtx {
        rules: &[],
        now: SEED_TIME,
    };
    let o = describe::object("WorkType").expect("described");
    for (name, description) in WORK_TYPES {
        dml::create(
            store,
            o,
            obj(json!({"Name": name, "Description": description})),
            None,
            &ctx,
        )
        .expect("seed data satisfies the schema");
    }
    true
}

/// Ids of the seeded assets: minted first, in `ASSETS` order.
pub fn asset_ids() -> Vec<String> {
    (1..=ASSETS.len() as u64)
        .map(|n| ids::mint("02i", n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_org_saved_before_work_types_gains_them_once() {
        let mut fresh = Store::new();
        seed(&mut fresh);
        assert_eq!(fresh.table("WorkType").count(), WORK_TYPES.len());
        assert!(!add_work_types(&mut fresh), "not twice");
        // A saved org of an earlier version: everything but the work types.
        let mut old = fresh.clone();
        old.objects.remove("WorkType");
        let assets = old.table("Asset").count();
        assert!(add_work_types(&mut old));
        assert_eq!(old.table("WorkType").count(), WORK_TYPES.len());
        assert_eq!(old.table("Asset").count(), assets, "its data is kept");
    }
}
