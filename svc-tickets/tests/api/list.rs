use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, id_of, new_user, spawn_app};

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
