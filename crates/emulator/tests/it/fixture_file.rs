//! The documented example fixture loads and means what it says.

use stopd_emulator::Fixture;

use crate::common::start;

#[tokio::test]
async fn example_fixture_loads_with_its_running_executions() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/fixture.json"
    ))
    .unwrap();
    Fixture::from_json(&text).expect("the example parses");
    let env = start(&text).await;
    let active = env.emulator.active_executions();
    let mut names: Vec<&str> = active.iter().map(|(p, _)| p.as_str()).collect();
    names.sort();
    assert_eq!(names, ["prod-api", "prod-batch", "prod-web", "prod-web"]);
    assert!(active.iter().any(|(_, e)| e.execution_type == "ROLLBACK"));
    // Its Change Calendar: CLOSED since an hour before it was loaded, for three hours.
    let now = env.emulator.now();
    let calendars = env.emulator.lock().calendars.clone();
    assert_eq!(
        calendars["prod-changes"][0],
        (now - 3_600_000, now + 7_200_000)
    );
    assert_eq!(calendars["prod-changes"].len(), 2);
}
