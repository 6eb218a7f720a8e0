//! MLLP over TLS both ways, with rcgen certificates: the agent as a client of TLS and mTLS
//! EHRs (and refusing the wrong CA or name), and as a TLS server requiring client
//! certificates.

use labagent_tests::config::{self as cfg, path};
use labagent_tests::mllp::{hl7_message, msa};
use labagent_tests::pki::{self, Ca};
use labagent_tests::{AgentProcess, MllpClient, StubSpec, free_port, wait_until};
use std::time::Duration;

#[test]
fn mllp_tls_and_mtls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Ca::new("labagent test CA");
    let other_ca = Ca::new("some other CA");
    let ca_pem = pki::write_ca(&ca, d, "ca");
    let other_ca_pem = pki::write_ca(&other_ca, d, "other-ca");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    let (agent_cert, agent_key) = ca.client("labagent").write(d, "agent-client");
    let (srv_cert, srv_key) = server.write(d, "server");

    // (a) TLS, (b) mTLS, (c) a server the sink's CA did not sign, (d) a name mismatch.
    let tls_stub = StubSpec {
        tls: Some(pki::server_config(&server, None)),
        ..StubSpec::default()
    }
    .start();
    let mtls_stub = StubSpec {
        tls: Some(pki::server_config(&server, Some(&ca))),
        ..StubSpec::default()
    }
    .start();
    let foreign = other_ca.server(&["localhost", "127.0.0.1"]);
    let wrong_ca_stub = StubSpec {
        tls: Some(pki::server_config(&foreign, None)),
        ..StubSpec::default()
    }
    .start();
    let wrong_name_stub = StubSpec {
        tls: Some(pki::server_config(&server, None)),
        ..StubSpec::default()
    }
    .start();

    let astm_port = free_port();
    let secure_port = free_port();
    let only_astm = "sources = [\"analyser\"]\nack_timeout = \"5s\"\n";
    let text = [
        cfg::agent(d, "tls"),
        cfg::astm_tcp_source("analyser", astm_port, ""),
        cfg::mllp_source(
            "secure",
            secure_port,
            &format!(
                "tls = {{ cert = {}, key = {}, client_ca = {} }}\n",
                path(&srv_cert),
                path(&srv_key),
                path(&ca_pem)
            ),
        ),
        cfg::mllp_sink(
            "tls",
            tls_stub.port,
            &format!(
                "{only_astm}tls = {{ ca = {}, server_name = \"localhost\" }}\n",
                path(&ca_pem)
            ),
        ),
        cfg::mllp_sink(
            "mtls",
            mtls_stub.port,
            &format!(
                "{only_astm}tls = {{ ca = {}, cert = {}, key = {}, server_name = \"localhost\" }}\n",
                path(&ca_pem),
                path(&agent_cert),
                path(&agent_key)
            ),
        ),
        cfg::mllp_sink(
            "wrongca",
            wrong_ca_stub.port,
            &format!(
                "{only_astm}tls = {{ ca = {}, server_name = \"localhost\" }}\n",
                path(&ca_pem)
            ),
        ),
        cfg::mllp_sink(
            "wrongname",
            wrong_name_stub.port,
            &format!(
                "{only_astm}tls = {{ ca = {}, server_name = \"ehr.invalid-name.example\" }}\n",
                path(&ca_pem)
            ),
        ),
        cfg::file_sink("secure-out", &d.join("outbox")).replace(
            "kind = \"file\"",
            "kind = \"file\"\nsources = [\"secure\"]",
        ),
    ]
    .concat();
    let agent = AgentProcess::start(&cfg::write(d, &text));
    let _ = other_ca_pem;

    let sim = labagent_tests::simulate(
        &["--to", &format!("tcp://127.0.0.1:{astm_port}")],
        Duration::from_secs(60),
    );
    assert!(sim.success(), "{sim:?}");

    // (a) and (b): delivered.
    let a = tls_stub.wait_for(1, Duration::from_secs(15));
    let b = mtls_stub.wait_for(1, Duration::from_secs(15));
    assert_eq!(a[0].bytes, b[0].bytes, "the same ORU to both");
    assert_eq!(a[0].er7().field("MSH", 9), "ORU^R01^ORU_R01");

    // (c): the handshake fails on the agent's side with a certificate error, logged.
    let warn_for = |sink: &str| {
        let key = format!("sink={sink} ");
        agent.wait_for_log(Duration::from_secs(15), move |l| {
            l.level == "WARN" && l.text.contains(&key) && l.text.contains("will retry")
        })
    };
    let c = warn_for("wrongca").expect("no warning for the wrong CA");
    assert!(
        c.text.contains("UnknownIssuer") || c.text.contains("certificate"),
        "{}",
        c.raw
    );
    // (d): the name does not match: refused, reason logged.
    let dn = warn_for("wrongname").expect("no warning for the wrong name");
    assert!(
        dn.text.contains("NotValidForName") || dn.text.contains("name"),
        "{}",
        dn.raw
    );
    assert!(wait_until(Duration::from_secs(10), || {
        !wrong_ca_stub.tls_errors().is_empty() && !wrong_name_stub.tls_errors().is_empty()
    }));
    assert!(
        wrong_ca_stub.received().is_empty(),
        "delivered past a CA it does not trust"
    );
    assert!(
        wrong_name_stub.received().is_empty(),
        "delivered to the wrong name"
    );

    // (e) the agent as a TLS server requiring client certificates.
    let client_leaf = ca.client("analyser-1");
    let anonymous =
        MllpClient::connect_tls(secure_port, pki::client_config(&ca, None), "localhost")
            .and_then(|mut c| c.send(&hl7_message("ANON1", "P1", "1.0")));
    assert!(
        anonymous.is_err(),
        "a client without a certificate got an answer: {:?}",
        anonymous.map(|a| String::from_utf8_lossy(&a).into_owned())
    );
    let mut good = MllpClient::connect_tls(
        secure_port,
        pki::client_config(&ca, Some(&client_leaf)),
        "localhost",
    )
    .expect("mTLS handshake");
    let ack = good
        .send(&hl7_message("MTLS1", "P2", "2.0"))
        .expect("ACK over mTLS");
    assert_eq!(msa(&ack), ("AA".to_string(), "MTLS1".to_string()));
    // A client certificate from another CA is refused too.
    let stranger = other_ca.client("stranger");
    let foreign_client = MllpClient::connect_tls(
        secure_port,
        pki::client_config(&ca, Some(&stranger)),
        "localhost",
    )
    .and_then(|mut c| c.send(&hl7_message("FOREIGN1", "P3", "3.0")));
    assert!(
        foreign_client.is_err(),
        "a foreign client certificate was accepted"
    );
    assert!(
        agent
            .log()
            .lines()
            .iter()
            .any(|l| l.level == "WARN" && l.text.contains("TLS handshake failed")),
        "{}",
        agent.log().dump()
    );
    let out = d.join("outbox").join("MTLS1.hl7");
    assert!(wait_until(Duration::from_secs(10), || out.is_file()));
    assert!(!d.join("outbox").join("ANON1.hl7").exists());
}
