//! Admin APIs through the wire, where the stock Python clients cannot reach:
//! the cluster-wide dynamic broker configs (the "" BROKER resource), layered
//! under this broker's own and under topic overrides, across a restart.

mod common;

use common::{create_topic, TestBroker};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// IncrementalAlterConfigs SET on one BROKER resource; returns the error code.
async fn set_broker(c: &mut common::Client, resource: &str, name: &str, value: &str) -> i16 {
    let r: IncrementalAlterConfigsResponse = c
        .call(
            ApiKey::IncrementalAlterConfigs,
            1,
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s(resource))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(s(name))
                        .with_config_operation(0)
                        .with_value(Some(s(value)))]),
            ]),
        )
        .await;
    r.responses[0].error_code
}

/// (value, source, synonym sources) of one config of a topic.
async fn topic_config(c: &mut common::Client, topic: &str, name: &str) -> (String, i8, Vec<i8>) {
    let r: DescribeConfigsResponse = c
        .call(
            ApiKey::DescribeConfigs,
            4,
            &DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic))
                    .with_configuration_keys(Some(vec![s(name)]))]),
        )
        .await;
    let c = &r.results[0].configs[0];
    (
        c.value.as_deref().unwrap_or("").to_string(),
        c.config_source,
        c.synonyms.iter().map(|s| s.source).collect(),
    )
}

#[tokio::test]
async fn cluster_and_broker_dynamic_defaults_layer_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    create_topic(&mut c, "plain", &[]).await;
    create_topic(&mut c, "own", &[("retention.ms", "1000")]).await;
    assert_eq!(set_broker(&mut c, "", "log.retention.ms", "5000").await, 0);
    assert_eq!(
        topic_config(&mut c, "plain", "retention.ms").await,
        ("5000".into(), 3, vec![3, 5])
    );
    assert_eq!(set_broker(&mut c, "1", "log.retention.ms", "6000").await, 0);
    assert_eq!(
        topic_config(&mut c, "plain", "retention.ms").await,
        ("6000".into(), 2, vec![2, 3, 5])
    );
    let own = topic_config(&mut c, "own", "retention.ms").await;
    assert_eq!((own.0.as_str(), own.1), ("1000", 1));
    // Applied to the partitions' logs at once.
    let p = b.broker.topic("plain").unwrap().partitions[0].clone();
    assert_eq!(p.config_blocking().unwrap().retention_ms, 6000);
    let own = b.broker.topic("own").unwrap().partitions[0].clone();
    assert_eq!(own.config_blocking().unwrap().retention_ms, 1000);
    // Other broker ids, static configs and bad values are refused.
    assert_eq!(set_broker(&mut c, "7", "log.retention.ms", "1").await, 42);
    assert_eq!(set_broker(&mut c, "1", "num.partitions", "3").await, 42);
    assert_eq!(set_broker(&mut c, "", "log.retention.ms", "x").await, 40);
    drop((p, own));
    b.stop().await;
    let b = TestBroker::start(dir.path()).await;
    let mut c = b.client().await;
    assert_eq!(
        topic_config(&mut c, "plain", "retention.ms").await,
        ("6000".into(), 2, vec![2, 3, 5])
    );
    b.stop().await;
}
