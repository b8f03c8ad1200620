#![allow(dead_code)]
pub mod fake_alertmanager;
pub mod fake_gate;
pub mod fake_grafana;
pub mod fake_oncall;
pub mod fake_pager;
pub mod fake_slack;
pub mod fake_smtp;
pub mod fake_socket_mode;
