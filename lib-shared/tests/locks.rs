//! Ticket locks against a real Redis.

use std::time::Duration;

use lib_shared::{
    domain::locks::{Holder, Locks, Promotion, Release},
    testing,
};

fn locks() -> Locks {
    let settings = testing::settings("test", None);
    let pool = lib_shared::runtime::infra::redis(&settings).unwrap();
    Locks::new(pool, settings.redis_prefix)
}

const TICKET: &str = "ticket-1";
const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn only_one_order_can_take_a_free_lock() {
    let locks = locks();
    assert!(locks.acquire(TICKET, "order-a", MINUTE).await.unwrap());
    assert!(!locks.acquire(TICKET, "order-b", MINUTE).await.unwrap());
    assert_eq!(
        locks.holder(TICKET).await.unwrap(),
        Holder::Reserved("order-a".into())
    );
}

#[tokio::test]
async fn the_holder_can_release_and_a_non_holder_cannot() {
    let locks = locks();
    locks.acquire(TICKET, "order-a", MINUTE).await.unwrap();
    assert_eq!(
        locks.release(TICKET, "order-b").await.unwrap(),
        Release::NotHeld
    );
    assert_eq!(
        locks.holder(TICKET).await.unwrap(),
        Holder::Reserved("order-a".into())
    );
    assert_eq!(
        locks.release(TICKET, "order-a").await.unwrap(),
        Release::Released
    );
    assert_eq!(locks.holder(TICKET).await.unwrap(), Holder::Free);
    assert_eq!(
        locks.release(TICKET, "order-a").await.unwrap(),
        Release::NotHeld
    );
}

#[tokio::test]
async fn an_expired_lock_goes_to_the_next_order_and_the_old_release_leaves_it_alone() {
    let locks = locks();
    locks
        .acquire(TICKET, "order-a", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(locks.acquire(TICKET, "order-b", MINUTE).await.unwrap());
    assert_eq!(
        locks.release(TICKET, "order-a").await.unwrap(),
        Release::NotHeld
    );
    assert_eq!(
        locks.promote(TICKET, "order-a").await.unwrap(),
        Promotion::Lost
    );
    assert_eq!(
        locks.holder(TICKET).await.unwrap(),
        Holder::Reserved("order-b".into())
    );
}

#[tokio::test]
async fn promotion_makes_the_lock_permanent_and_blocks_cancellation() {
    let locks = locks();
    locks
        .acquire(TICKET, "order-a", Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(
        locks.promote(TICKET, "order-a").await.unwrap(),
        Promotion::Sold
    );
    assert_eq!(
        locks.promote(TICKET, "order-a").await.unwrap(),
        Promotion::Sold,
        "idempotent"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        locks.holder(TICKET).await.unwrap(),
        Holder::Sold("order-a".into()),
        "no TTL left"
    );
    assert_eq!(
        locks.release(TICKET, "order-a").await.unwrap(),
        Release::SoldToThisOrder
    );
    assert!(!locks.acquire(TICKET, "order-b", MINUTE).await.unwrap());
}

#[tokio::test]
async fn a_hundred_concurrent_acquirers_produce_one_holder() {
    let locks = locks();
    let attempts = (0..100).map(|i| {
        let locks = locks.clone();
        tokio::spawn(async move {
            locks
                .acquire(TICKET, &format!("order-{i}"), MINUTE)
                .await
                .unwrap()
        })
    });
    let won = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(won, 1);
}

#[tokio::test]
async fn restore_never_overwrites_an_existing_lock() {
    let locks = locks();
    locks.acquire(TICKET, "order-new", MINUTE).await.unwrap();
    assert!(
        !locks
            .restore(TICKET, "order-old", Some(MINUTE))
            .await
            .unwrap()
    );
    assert!(
        locks
            .restore("ticket-2", "sold:order-x", None)
            .await
            .unwrap()
    );
    assert_eq!(
        locks.holder("ticket-2").await.unwrap(),
        Holder::Sold("order-x".into())
    );
}

#[tokio::test]
async fn acquire_or_holder_takes_a_free_lock_or_names_the_holder() {
    let locks = locks();
    assert_eq!(
        locks
            .acquire_or_holder(TICKET, "order-a", MINUTE)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        locks
            .acquire_or_holder(TICKET, "order-b", MINUTE)
            .await
            .unwrap(),
        Some(Holder::Reserved("order-a".into()))
    );
    locks.promote(TICKET, "order-a").await.unwrap();
    assert_eq!(
        locks
            .acquire_or_holder(TICKET, "order-b", MINUTE)
            .await
            .unwrap(),
        Some(Holder::Sold("order-a".into()))
    );
}
