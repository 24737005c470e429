//! Decisions in HQ's store, as the console makes them and ingest sends them: versions,
//! claims, maker-checker, supervisor overrides, the outbox (each decision taken once per
//! round, again when unconfirmed), and acknowledgements only from the application's bus.

use hq_sync::decisions::{Action, DecisionError, Delivery};
use hq_sync::staff::{Lang, NewStaff, Password, Role, Staff, Username};
use hq_sync::store::HqStore;
use keliling_shared::application::{Attachment, AttachmentKind, FieldName, MediaType};
use keliling_shared::decision::{Need, Outcome, ReasonCode};
use keliling_shared::{
    Applicant, Application, ApplicationId, BusId, Catalogue, Nik, ServiceCode, Sex, Sha256, Stop,
    Text, UnixMillis,
};

fn text(s: &str) -> Text {
    Text::parse(s).unwrap()
}

/// A family-card update of `bus` with one scan (KK_UPDATE: Dukcapil, rejections need a
/// second person), complete at HQ when `complete`.
fn kk_update(store: &mut HqStore, bus: &BusId, complete: bool) -> ApplicationId {
    let scan = Sha256::digest(ApplicationId::new_v7().to_string().as_bytes());
    let app = Application {
        id: ApplicationId::new_v7(),
        bus_id: bus.clone(),
        operator: text("Petugas"),
        stop: Stop {
            village: text("Desa Baumata"),
            gps: None,
        },
        service: ServiceCode::parse("KK_UPDATE").unwrap(),
        applicant: Applicant {
            full_name: text("Warga"),
            nik: Nik::parse("5371015203900001").unwrap(),
            date_of_birth: time::macros::date!(1990 - 03 - 12),
            sex: Sex::Female,
            address: text("Jl. Timor Raya"),
            phone: None,
        },
        fields: [
            (
                FieldName::parse("kk_number").unwrap(),
                text("5371010000000001"),
            ),
            (
                FieldName::parse("change_reason").unwrap(),
                text("kelahiran"),
            ),
        ]
        .into_iter()
        .collect(),
        attachments: vec![Attachment {
            kind: AttachmentKind::Document(FieldName::parse("old_kk").unwrap()),
            media_type: MediaType::Jpeg,
            sha256: scan,
            size: 1000,
        }],
        captured_at: UnixMillis::now(),
    };
    let now = UnixMillis::now();
    store.ingest_record(&app, now, "hq-1", 5000).unwrap();
    if complete {
        store
            .commit_blob(
                &scan,
                1000,
                hq_sync::photos::BlobAt::File(std::path::Path::new("/x")),
                bus,
                now,
            )
            .unwrap();
    }
    app.id
}

fn staff(store: &mut HqStore, user: &str, role: Role) -> Staff {
    store
        .add_staff(
            &NewStaff {
                username: Username::parse(user).unwrap(),
                display_name: user.into(),
                role,
                agencies: vec!["DUKCAPIL".into()],
                language: Lang::Id,
                password: Password::new("kata-sandi-panjang".into()),
            },
            &["DUKCAPIL".to_owned(), "POLRI".to_owned()],
            UnixMillis::now(),
        )
        .unwrap()
}

fn refused(r: Result<u32, DecisionError>) -> &'static str {
    match r {
        Err(DecisionError::Refused(k)) => k,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn versions_claims_checks_and_the_outbox() {
    for store in hq_sync::testing::each_backend("versions_claims_checks_and_the_outbox") {
        eprintln!("on {:?}", store.backend);
        versions_claims_checks_and_the_outbox_on(store.open());
    }
}

fn versions_claims_checks_and_the_outbox_on(mut s: HqStore) {
    let cat = Catalogue::builtin();
    let bus = BusId::parse("bus-a").unwrap();
    let other_bus = BusId::parse("bus-b").unwrap();
    let maker = staff(&mut s, "maker", Role::Reviewer);
    let checker = staff(&mut s, "checker", Role::Reviewer);
    let boss = staff(&mut s, "boss", Role::Supervisor);
    let now = UnixMillis::now();

    // Not complete: no approval; no claim: no decision by a reviewer.
    let waiting = kk_update(&mut s, &bus, false);
    let approve = Action::Approve { note: None };
    assert_eq!(
        refused(s.decide(&bus, &waiting, &approve, &maker, &cat, now)),
        "decide-claim-first"
    );
    s.claim_application(&bus, &waiting, &maker, now).unwrap();
    assert_eq!(
        refused(s.decide(&bus, &waiting, &approve, &checker, &cat, now)),
        "decide-claimed-by-other"
    );
    assert_eq!(
        refused(s.decide(&bus, &waiting, &approve, &maker, &cat, now)),
        "decide-photo-missing"
    );
    // More information may be asked while the photo is on its way.
    let info = Action::RequestInfo {
        message: text("Bawa KK asli"),
        needs: vec![Need::Document(FieldName::parse("old_kk").unwrap())],
    };
    assert_eq!(
        s.decide(&bus, &waiting, &info, &maker, &cat, now).unwrap(),
        1
    );

    // Maker-checker: a KK_UPDATE rejection waits for a second person, held at HQ.
    let app = kk_update(&mut s, &bus, true);
    s.claim_application(&bus, &app, &maker, now).unwrap();
    let reject = Action::Reject {
        code: ReasonCode::parse("KK_NOT_HEAD").unwrap(),
        note: Some(text("Kepala keluarga harus hadir")),
    };
    assert_eq!(s.decide(&bus, &app, &reject, &maker, &cat, now).unwrap(), 1);
    assert_eq!(
        s.application_review_state(&bus, &app).unwrap().as_deref(),
        Some("awaiting_check")
    );
    let due = s.take_due_decisions(now, now).unwrap();
    assert_eq!(
        due.len(),
        1,
        "only the request for information is due: {due:?}"
    );
    assert_eq!(due[0].1.application, waiting);
    assert!(matches!(
        s.check_decision(&bus, &app, true, &maker, &cat, now),
        Err(DecisionError::Refused("check-own"))
    ));
    s.check_decision(&bus, &app, true, &checker, &cat, now)
        .unwrap();
    let due = s.take_due_decisions(now, now).unwrap();
    assert_eq!(due.len(), 1);
    let (to, d) = &due[0];
    assert_eq!((to, d.application, d.version), (&bus, app, 1));
    assert!(matches!(&d.outcome, Outcome::Rejected { code, reason, .. }
        if code.as_str() == "KK_NOT_HEAD" && reason.as_str().contains("kepala keluarga")));
    // Taken once per round: nothing is due again until it has waited RESEND_AFTER.
    assert!(s.take_due_decisions(now, now).unwrap().is_empty());
    let later = UnixMillis(now.0 + hq_sync::decisions::RESEND_AFTER.as_millis() as i64 + 1);
    let online = |s: &mut hq_sync::store::HqStore, on: bool, at: UnixMillis| {
        s.apply_fleet_updates(&[hq_sync::store::FleetUpdate::Online {
            bus: bus.clone(),
            online: on,
            hq_now: at,
        }])
        .unwrap()
    };
    // Offline (its last will, or not heard from): no copies on the timer, which would
    // only queue at the broker.
    online(&mut s, false, later);
    assert!(s.take_due_decisions(later, now).unwrap().is_empty());
    online(&mut s, true, now);
    assert!(
        s.take_due_decisions(later, later).unwrap().is_empty(),
        "not heard from since: not online"
    );
    online(&mut s, true, later);
    assert_eq!(
        s.take_due_decisions(later, now).unwrap().len(),
        2,
        "both unconfirmed, the bus online: sent again"
    );
    // The bus comes back online: its unconfirmed decisions are due at once.
    assert_eq!(s.resend_decisions_to(&bus).unwrap(), 2);
    assert_eq!(s.take_due_decisions(later, later).unwrap().len(), 2);

    // Only the application's own bus confirms it.
    assert!(!s.on_decision_ack(&other_bus, &app, 1, now).unwrap());
    assert!(s.on_decision_ack(&bus, &app, 1, now).unwrap());
    assert!(!s.on_decision_ack(&bus, &app, 1, now).unwrap(), "once");
    let rows = s.decisions_of(&bus, &app).unwrap();
    assert_eq!(rows[0].delivery, Delivery::Confirmed);

    // Decided: a reviewer may not change it; a supervisor makes version 2, which
    // supersedes version 1 (not yet confirmed) of the other application.
    s.claim_application(&bus, &app, &maker, now).unwrap();
    assert_eq!(
        refused(s.decide(&bus, &app, &approve, &maker, &cat, now)),
        "decide-supervisor-only"
    );
    s.release_claim(&bus, &app, &maker, now).unwrap();
    assert_eq!(s.decide(&bus, &app, &approve, &boss, &cat, now).unwrap(), 2);
    assert_eq!(
        s.decide(&bus, &waiting, &info, &boss, &cat, now).unwrap(),
        2
    );
    let rows = s.decisions_of(&bus, &waiting).unwrap();
    assert_eq!(rows[0].delivery, Delivery::Superseded);
    assert_eq!(rows[1].delivery, Delivery::Waiting);
    let due = s.take_due_decisions(later, later).unwrap();
    assert_eq!(
        due.len(),
        2,
        "the two version 2s, no superseded version 1: {due:?}"
    );
    assert!(due.iter().all(|(_, d)| d.version == 2));
    assert_eq!(
        s.decisions_waiting_per_bus().unwrap(),
        vec![("bus-a".to_owned(), 2)]
    );

    // Every step is in the audit log, and the chain holds.
    let log = s
        .audit_log(&hq_sync::audit::Filter {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    for action in [
        "decided",
        "check_confirmed",
        "decision_confirmed",
        "claimed",
    ] {
        assert!(log.iter().any(|r| r.entry.action == action), "{action}");
    }
    assert_eq!(s.verify_audit().unwrap(), None);
}
