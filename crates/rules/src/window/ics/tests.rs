use chrono::{DateTime, Utc};
use chrono_tz::Europe::Berlin;

use super::*;

fn cal(body: &str) -> Result<Calendar, IcsError> {
    let text = format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{body}END:VCALENDAR\r\n");
    Calendar::parse("test.ics", &text, Berlin)
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn in_force(c: &Calendar, t: &str) -> bool {
    c.window_at(at(t)).is_some()
}

const WEEKLY: &str = "BEGIN:VEVENT\r\nUID:w\r\nDTSTART;TZID=America/New_York:20270104T090000\r\n\
DTEND;TZID=America/New_York:20270104T110000\r\nRRULE:FREQ=WEEKLY;BYDAY=MO\r\n\
EXDATE;TZID=America/New_York:20270118T090000\r\nEND:VEVENT\r\n";

#[test]
fn a_weekly_event_with_tzid_is_in_force_in_its_zone_across_dst() {
    let c = cal(WEEKLY).unwrap();
    assert!(in_force(&c, "2027-01-11T14:30:00Z")); // 09:30 EST
    assert!(!in_force(&c, "2027-01-11T16:00:00Z")); // 11:00 EST
    assert!(in_force(&c, "2027-03-15T13:30:00Z")); // 09:30 EDT
    assert!(!in_force(&c, "2027-03-15T15:00:00Z"));
}

#[test]
fn an_exdate_cancels_one_occurrence() {
    let c = cal(WEEKLY).unwrap();
    assert!(!in_force(&c, "2027-01-18T14:30:00Z"));
    assert!(in_force(&c, "2027-01-25T14:30:00Z"));
}

#[test]
fn an_all_day_event_is_midnight_to_midnight_in_the_rules_zone() {
    let c = cal("BEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20271224\r\nDTEND;VALUE=DATE:20271227\r\nEND:VEVENT\r\n").unwrap();
    assert_eq!(
        c.windows.to_vec(),
        vec![Window {
            start: at("2027-12-23T23:00:00Z"),
            end: at("2027-12-26T23:00:00Z")
        }]
    );
}

#[test]
fn a_recurrence_id_override_moves_one_occurrence() {
    let body = "BEGIN:VEVENT\r\nUID:r\r\nDTSTART:20270105T100000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=DAILY;COUNT=3\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:r\r\nRECURRENCE-ID:20270106T100000Z\r\nDTSTART:20270106T150000Z\r\nDURATION:PT1H\r\nEND:VEVENT\r\n";
    let c = cal(body).unwrap();
    assert!(in_force(&c, "2027-01-05T10:30:00Z"));
    assert!(!in_force(&c, "2027-01-06T10:30:00Z"));
    assert!(in_force(&c, "2027-01-06T15:30:00Z"));
    assert!(in_force(&c, "2027-01-07T10:30:00Z"));
    assert!(!in_force(&c, "2027-01-08T10:30:00Z"));
}

#[test]
fn berlin_gap_and_repeat_follow_rfc_5545() {
    // 02:30 does not exist on 2027-03-28: read at +01:00, i.e. 01:30Z (03:30 CEST).
    let c = cal("BEGIN:VEVENT\r\nDTSTART;TZID=Europe/Berlin:20270328T023000\r\nDURATION:PT1H\r\nEND:VEVENT\r\n").unwrap();
    assert_eq!(c.windows[0].start, at("2027-03-28T01:30:00Z"));
    // 02:30 happens twice on 2027-10-31: the first (CEST, 00:30Z).
    let c = cal("BEGIN:VEVENT\r\nDTSTART;TZID=Europe/Berlin:20271031T023000\r\nDURATION:PT1H\r\nEND:VEVENT\r\n").unwrap();
    assert_eq!(c.windows[0].start, at("2027-10-31T00:30:00Z"));
}

#[test]
fn a_non_iana_tzid_is_refused_with_its_line() {
    let body = "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nEND:VTIMEZONE\r\n";
    let e = cal(body).unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("W. Europe Standard Time"), "{e}");
    let body =
        "BEGIN:VEVENT\r\nDTSTART;TZID=Customized Time Zone:20270101T090000\r\nEND:VEVENT\r\n";
    assert_eq!(cal(body).unwrap_err().line, 4);
}

#[test]
fn last_friday_of_the_month_and_folded_lines() {
    let body = "BEGIN:VEVENT\r\nDTSTART;TZID=Europe/Berlin:20270129T180000\r\nDURATION:P2DT12H\r\nRRULE:FREQ=MONTHLY;BY\r\n DAY=-1FR;COUNT=3\r\nEND:VEVENT\r\n";
    let c = cal(body).unwrap();
    let starts: Vec<_> = c.windows.iter().map(|w| w.start.to_rfc3339()).collect();
    assert_eq!(
        starts,
        [
            "2027-01-29T17:00:00+00:00",
            "2027-02-26T17:00:00+00:00",
            "2027-03-26T17:00:00+00:00"
        ]
    );
    // P2D is on the wall clock: Monday 06:00 CEST after the change on 2027-03-28.
    assert_eq!(c.windows[2].end, at("2027-03-29T04:00:00Z"));
}
