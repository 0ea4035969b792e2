use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_error, id_of, new_user, spawn_app};

async fn items(resp: reqwest::Response) -> (Vec<String>, Value) {
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    let titles = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_string())
        .collect();
    (titles, body["nextCursor"].clone())
}

#[tokio::test]
async fn list_shows_available_tickets_newest_first_by_default() {
    let app = spawn_app().await;
    let seller = new_user();
    for title in ["first", "second", "third"] {
        app.listed(&seller, title, 10.0).await;
    }
    let reserved = app.listed(&seller, "reserved one", 10.0).await;
    app.reserve(&id_of(&reserved), &lib_shared::testing::new_user_id())
        .await;
    app.wait_for_status(&id_of(&reserved), "reserved").await;

    let (titles, next) = items(app.list("").await).await;
    assert_eq!(titles, ["third", "second", "first"]);
    assert!(next.is_null());
    let (titles, _) = items(app.list("?status=reserved").await).await;
    assert_eq!(titles, ["reserved one"]);
    let (titles, _) = items(app.list("?status=all").await).await;
    assert_eq!(titles.len(), 4);
    let (titles, _) = items(app.list("?status=sold").await).await;
    assert!(titles.is_empty());
}

#[tokio::test]
async fn list_pages_with_a_cursor_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let seller = new_user();
    for i in 0..7 {
        app.listed(&seller, &format!("t{i}"), 10.0).await;
    }
    let mut seen = Vec::new();
    let mut query = "?limit=3".to_string();
    for page in 0.. {
        let (titles, next) = items(app.list(&query).await).await;
        seen.extend(titles);
        match next.as_str() {
            Some(cursor) => query = format!("?limit=3&cursor={cursor}"),
            None => {
                assert_eq!(page, 2, "7 items in pages of 3");
                break;
            }
        }
    }
    assert_eq!(seen, ["t6", "t5", "t4", "t3", "t2", "t1", "t0"]);
}

#[tokio::test]
async fn list_filters_by_seller_and_title_text() {
    let app = spawn_app().await;
    let (ada, bob) = (new_user(), new_user());
    app.listed(&ada, "Jazz in the park", 10.0).await;
    app.listed(&bob, "JAZZ (late show)", 10.0).await;
    app.listed(&bob, "Rock", 10.0).await;

    let (titles, _) = items(app.list(&format!("?userId={}", bob.id)).await).await;
    assert_eq!(titles, ["Rock", "JAZZ (late show)"]);
    let (titles, _) = items(app.list("?q=jazz").await).await;
    assert_eq!(titles, ["JAZZ (late show)", "Jazz in the park"]);
    let (titles, _) = items(app.list("?q=(late").await).await;
    assert_eq!(titles, ["JAZZ (late show)"], "regex characters are literal");
    let (titles, _) = items(app.list("?q=.*").await).await;
    assert!(titles.is_empty());
}

#[tokio::test]
async fn list_refuses_bad_parameters_with_400() {
    let app = spawn_app().await;
    let cases = [
        ("?status=gone", "status"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "limit"),
        ("?cursor=abc", "cursor"),
        ("?userId=%7B%22%24ne%22%3Anull%7D", "userId"),
    ];
    for (query, field) in cases {
        let errors = assert_error(app.list(query).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(errors[0]["field"], field, "query {query}");
    }
}

/// Newest first; `(id, title)`.
type Shelf = Vec<(String, String)>;

async fn assert_first_page(app: &TestApp, query: &str, expected: &Shelf) {
    let (titles, next) = items(app.list(query).await).await;
    let want: Vec<&str> = expected.iter().take(5).map(|(_, t)| t.as_str()).collect();
    assert_eq!(titles, want, "{query}");
    assert_eq!(next.is_null(), expected.len() <= 5, "{query}: next cursor");
}

async fn assert_first_pages(app: &TestApp, available: &Shelf, all: &Shelf) {
    assert_first_page(app, "?limit=5", available).await;
    assert_first_page(app, "?limit=5&status=all", all).await;
}

/// Takes a ticket off the available listing, as an order does.
async fn reserved(app: &TestApp, id: &str) {
    app.reserve(id, &lib_shared::testing::new_user_id()).await;
    app.wait_for_status(id, "reserved").await;
}

/// A first page reads from where the last one ended (see `Listings::read`); tickets that
/// arrive above it, and tickets that leave the listing above and below it, must not make
/// it differ from a read of the whole listing.
#[tokio::test]
async fn first_pages_stay_exact_as_tickets_arrive_and_leave() {
    let app = spawn_app().await;
    let seller = new_user();
    let (mut available, mut all) = (Shelf::new(), Shelf::new());
    let mut listed = 0;
    let mut list_more = async |n: usize, available: &mut Shelf, all: &mut Shelf| {
        for _ in 0..n {
            let title = format!("t{listed}");
            listed += 1;
            let id = id_of(&app.listed(&seller, &title, 10.0).await);
            available.insert(0, (id.clone(), title.clone()));
            all.insert(0, (id, title));
            assert_first_pages(&app, available, all).await;
        }
    };
    list_more(30, &mut available, &mut all).await;
    // The newest leave one by one: the floor serves until fewer than a page and one are
    // above it, then the read goes below it.
    for _ in 0..8 {
        let (id, _) = available.remove(0);
        reserved(&app, &id).await;
        assert_first_pages(&app, &available, &all).await;
    }
    list_more(10, &mut available, &mut all).await;
    // Older ones leave, far below any floor.
    for i in (0..available.len()).rev().step_by(3).take(6) {
        let (id, _) = available.remove(i);
        reserved(&app, &id).await;
        assert_first_pages(&app, &available, &all).await;
    }
    // Then the whole page.
    while available.len() > 3 {
        let (id, _) = available.remove(0);
        reserved(&app, &id).await;
    }
    assert_first_pages(&app, &available, &all).await;
}
