//! Ticket locks against a real Redis.

use std::time::Duration;

use lib_shared::{
    domain::locks::{Ending, Holder, Locks, Promotion, Release, Unmarked, ticket_of_lock_key},
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

async fn wait_in_line(locks: &Locks, ticket: &str, buyer: &str) {
    let settings = testing::settings("test", None);
    let mut conn = lib_shared::runtime::infra::redis(&settings).unwrap();
    let () = redis::AsyncCommands::zadd(&mut conn, locks.waitlist_key(ticket), buyer, 1)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_ticket_key_is_the_hash_tag_of_both_keys() {
    let locks = locks();
    let (lock, line) = (locks.lock_key("abc"), locks.waitlist_key("abc"));
    assert!(lock.ends_with("lock:ticket:{abc}"), "{lock}");
    assert!(line.ends_with("waitlist:ticket:{abc}"), "{line}");
    let prefix = lock.strip_suffix("lock:ticket:{abc}").unwrap();
    assert_eq!(ticket_of_lock_key(prefix, &lock), Some("abc"));
    assert_eq!(ticket_of_lock_key(prefix, &line), None);
}

#[tokio::test]
async fn a_reservation_ending_with_buyers_waiting_is_handed_over_not_freed() {
    let locks = locks();
    let ticket = testing::unique_name("ticket");
    locks.acquire(&ticket, "order-a", MINUTE).await.unwrap();
    wait_in_line(&locks, &ticket, "buyer-1").await;

    let Ending::HandingOver(mark) = locks
        .end(&ticket, "order-a", "order-b", MINUTE)
        .await
        .unwrap()
    else {
        panic!("not handed over")
    };
    assert_eq!(
        (mark.next.as_str(), mark.ended.as_str()),
        ("order-b", "order-a")
    );
    // Ending it again answers the hand-over under way; nobody else gets in.
    assert_eq!(
        locks
            .end(&ticket, "order-a", "order-c", MINUTE)
            .await
            .unwrap(),
        Ending::HandingOver(mark)
    );
    assert_eq!(
        locks
            .acquire_or_holder(&ticket, "order-x", MINUTE)
            .await
            .unwrap(),
        Some(Holder::HandingOver {
            next: Some("order-b".into())
        })
    );
    assert!(
        !locks
            .transfer(&ticket, "order-x", "buyer-1", MINUTE)
            .await
            .unwrap()
    );
    assert!(
        locks
            .transfer(&ticket, "order-b", "buyer-1", MINUTE)
            .await
            .unwrap()
    );
    assert!(
        locks
            .transfer(&ticket, "order-b", "buyer-1", MINUTE)
            .await
            .unwrap(),
        "repeatable"
    );
    assert_eq!(
        locks.holder(&ticket).await.unwrap(),
        Holder::Reserved("order-b".into())
    );
    // The line is empty now: the next ending frees the ticket.
    assert_eq!(
        locks
            .end(&ticket, "order-b", "order-c", MINUTE)
            .await
            .unwrap(),
        Ending::Released
    );
    assert_eq!(locks.holder(&ticket).await.unwrap(), Holder::Free);
}

#[tokio::test]
async fn a_free_lock_with_buyers_waiting_is_not_free_to_others() {
    let locks = locks();
    let ticket = testing::unique_name("ticket");
    wait_in_line(&locks, &ticket, "buyer-1").await;
    assert_eq!(
        locks
            .acquire_or_holder(&ticket, "order-x", MINUTE)
            .await
            .unwrap(),
        Some(Holder::HandingOver { next: None })
    );
    assert!(!locks.acquire(&ticket, "order-x", MINUTE).await.unwrap());
    // A hand-over that finds nobody to hand to frees it, unless someone waits.
    let Ending::HandingOver(mark) = locks.end(&ticket, "", "order-b", MINUTE).await.unwrap() else {
        panic!("not handed over")
    };
    assert_eq!(
        locks.unmark(&ticket, &mark.next).await.unwrap(),
        Unmarked::Waiters
    );
    let settings = testing::settings("test", None);
    let mut conn = lib_shared::runtime::infra::redis(&settings).unwrap();
    let () = redis::AsyncCommands::del(&mut conn, locks.waitlist_key(&ticket))
        .await
        .unwrap();
    assert_eq!(
        locks.unmark(&ticket, "order-z").await.unwrap(),
        Unmarked::NotThisHandOver
    );
    assert_eq!(
        locks.unmark(&ticket, &mark.next).await.unwrap(),
        Unmarked::Freed
    );
    assert!(locks.acquire(&ticket, "order-x", MINUTE).await.unwrap());
}

#[tokio::test]
async fn a_sale_empties_the_line_and_the_next_order_of_a_hand_over_can_be_paid() {
    let locks = locks();
    let ticket = testing::unique_name("ticket");
    locks.acquire(&ticket, "order-a", MINUTE).await.unwrap();
    wait_in_line(&locks, &ticket, "buyer-1").await;
    locks
        .end(&ticket, "order-a", "order-b", MINUTE)
        .await
        .unwrap();
    assert_eq!(
        locks.promote(&ticket, "order-a").await.unwrap(),
        Promotion::Lost
    );
    assert_eq!(
        locks.promote(&ticket, "order-b").await.unwrap(),
        Promotion::Sold
    );
    assert_eq!(
        locks.holder(&ticket).await.unwrap(),
        Holder::Sold("order-b".into())
    );
    let settings = testing::settings("test", None);
    let mut conn = lib_shared::runtime::infra::redis(&settings).unwrap();
    let waiting: bool = redis::AsyncCommands::exists(&mut conn, locks.waitlist_key(&ticket))
        .await
        .unwrap();
    assert!(!waiting);
}
