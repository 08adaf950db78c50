use super::*;

#[test]
fn every_stream_has_id_first_cursor_and_client_column() {
    for s in ALL {
        assert_eq!(s.columns[0].name, PRIMARY_KEY, "{}", s.name);
        let cursor = s.columns.iter().find(|c| c.name == CURSOR).expect("cursor");
        assert_eq!(cursor.kind, Kind::Timestamp);
        assert!(!cursor.nullable);
        assert!(
            s.columns.iter().any(|c| c.name == s.client_column),
            "{}",
            s.name
        );
    }
}

#[test]
fn schema_lists_every_column() {
    let schema = find("service_history").expect("stream").json_schema();
    let props = schema["properties"].as_object().expect("properties");
    assert_eq!(
        props.len(),
        find("service_history").expect("stream").columns.len()
    );
    assert_eq!(schema["properties"]["hours_worked"]["type"], "string");
    assert_eq!(
        schema["properties"]["resolved_at"]["type"],
        json!(["string", "null"])
    );
}
