//! pgmig's state schema in a real target: the migration row, wiring checks,
//! P pinned once, slot records that keep their creation LSNs.

use pgmig_core::plan::{Plan, PlannedTable, SlotGroup};
use pgmig_core::state;
use pgmig_core::{Error, Lsn, QualifiedTable};
use pgmig_pglogical::slot_state::{self, SlotRecord};
use pgmig_testkit::{Cluster, skip_unless_available};

fn plan(tables: &[&str]) -> Plan {
    Plan::from_slots(vec![SlotGroup::new(
        "dms_slot_01",
        tables
            .iter()
            .map(|t| PlannedTable::new(QualifiedTable::new("public", *t), true, 8192))
            .collect(),
    )])
}

#[tokio::test(flavor = "multi_thread")]
async fn migration_state_round_trips_and_refuses_wrong_wiring() {
    skip_unless_available!(16);
    let target = Cluster::primary(16).await.unwrap();
    let db = target.create_database("state").await.unwrap();
    let client = target.connect(&db).await.unwrap();

    assert_eq!(state::load_migration(&client).await.unwrap(), None);
    assert!(slot_state::slots(&client).await.unwrap().is_empty());

    let sysid = u64::MAX - 7; // above i64::MAX: stored exactly
    let first = state::init_migration(&client, sysid, "app", &plan(&["a"]))
        .await
        .unwrap();
    assert_eq!(first.source_system_identifier, sysid);
    assert_eq!(first.plan, plan(&["a"]));
    assert_eq!(first.pause_lsn, None);
    // Idempotent, and the plan may change before P.
    state::init_migration(&client, sysid, "app", &plan(&["a"]))
        .await
        .unwrap();
    let changed = state::init_migration(&client, sysid, "app", &plan(&["a", "b"]))
        .await
        .unwrap();
    assert_eq!(changed.plan, plan(&["a", "b"]));

    // Another source, or another database of it: refused, nothing changed.
    for (other_sysid, other_db) in [(sysid - 1, "app"), (sysid, "other")] {
        let err = state::init_migration(&client, other_sysid, other_db, &plan(&["a"]))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::State { .. }), "{err:?}");
        assert!(
            err.to_string().contains("already holds pgmig's state"),
            "{err}"
        );
    }
    assert_eq!(
        state::load_migration(&client).await.unwrap().unwrap().plan,
        plan(&["a", "b"])
    );

    // P is pinned once.
    let p: Lsn = "1/2A0".parse().unwrap();
    state::set_pause_lsn(&client, p).await.unwrap();
    state::set_pause_lsn(&client, p).await.unwrap();
    let err = state::set_pause_lsn(&client, Lsn(p.0 + 1))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("already pinned at P = 1/2A0"),
        "{err}"
    );
    assert_eq!(
        state::load_migration(&client)
            .await
            .unwrap()
            .unwrap()
            .pause_lsn,
        Some(p)
    );
    // … and the plan can no longer change.
    let err = state::init_migration(&client, sysid, "app", &plan(&["c"]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot change after the snapshot at 1/2A0"),
        "{err}"
    );

    // Slot records keep their first LSNs.
    let slot = SlotRecord {
        name: "dms_slot_01".into(),
        plugin: "pglogical".into(),
        created_by_pgmig: true,
        restart_lsn: "0/100".parse().unwrap(),
        confirmed_flush_lsn: "0/200".parse().unwrap(),
        sets_verified_lsn: None,
    };
    slot_state::record_slot(&client, &slot).await.unwrap();
    let mut later = slot.clone();
    later.confirmed_flush_lsn = "0/900".parse().unwrap();
    later.created_by_pgmig = false;
    slot_state::record_slot(&client, &later).await.unwrap();
    slot_state::set_sets_verified(&client, "dms_slot_01", "0/250".parse().unwrap())
        .await
        .unwrap();
    let recorded = slot_state::slots(&client).await.unwrap();
    let mut want = slot.clone();
    want.sets_verified_lsn = Some("0/250".parse().unwrap());
    assert_eq!(recorded, vec![want]);
    slot_state::forget_slot(&client, "dms_slot_01")
        .await
        .unwrap();
    assert!(slot_state::slots(&client).await.unwrap().is_empty());
}
