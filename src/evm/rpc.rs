//! A JSON-RPC 2.0 client for an Ethereum node over HTTP(S) (`ureq`, blocking). Owns request
//! framing and the decoding of the few results we use. Invariant: every value from the node
//! is parsed with a typed error, never trusted to fit: a node is a remote party too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use serde_json::{Value, json};

/// How long one RPC call may take end to end.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest response we read (a log query can be long; anything above is refused).
const MAX_RESPONSE: u64 = 16 << 20;

/// RPC failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The node could not be reached, or answered with something that is not JSON-RPC.
    #[error("RPC transport: {0}")]
    Transport(String),
    /// The node answered with a JSON-RPC error (a revert carries its data).
    #[error("RPC error {code}: {message}")]
    Node {
        /// JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
        /// Revert data, if any, as bytes.
        data: Option<Vec<u8>>,
    },
    /// A result did not have the expected shape.
    #[error("RPC result of {method}: {what}")]
    Decode {
        /// The method called.
        method: &'static str,
        /// What was wrong.
        what: String,
    },
}

/// A mined transaction's receipt, reduced to what we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The transaction.
    pub hash: B256,
    /// True if it succeeded (status 1).
    pub success: bool,
    /// Gas it used.
    pub gas_used: u64,
    /// The block it was mined in.
    pub block: u64,
    /// For a deployment, the new contract.
    pub contract_address: Option<Address>,
    /// Its logs: emitter, topics, data.
    pub logs: Vec<Log>,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// The emitting contract.
    pub address: Address,
    /// Topics (the first is the event signature hash).
    pub topics: Vec<B256>,
    /// Non-indexed data.
    pub data: Vec<u8>,
}

/// A JSON-RPC endpoint.
pub struct Rpc {
    agent: ureq::Agent,
    url: String,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rpc({})", self.url)
    }
}

fn decode(method: &'static str, what: impl Into<String>) -> RpcError {
    RpcError::Decode {
        method,
        what: what.into(),
    }
}

fn hex_bytes(method: &'static str, v: &Value) -> Result<Vec<u8>, RpcError> {
    let s = v.as_str().ok_or_else(|| decode(method, "not a string"))?;
    hex::decode(s.strip_prefix("0x").unwrap_or(s)).map_err(|e| decode(method, e.to_string()))
}

fn quantity(method: &'static str, v: &Value) -> Result<U256, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| decode(method, "quantity not a string"))?;
    s.parse::<U256>()
        .map_err(|e| decode(method, format!("quantity {s:?}: {e}")))
}

fn small(method: &'static str, v: &Value) -> Result<u64, RpcError> {
    u64::try_from(quantity(method, v)?).map_err(|_| decode(method, "quantity above 2^64"))
}

fn b256(method: &'static str, v: &Value) -> Result<B256, RpcError> {
    let b = hex_bytes(method, v)?;
    B256::try_from(b.as_slice()).map_err(|_| decode(method, "not 32 bytes"))
}

fn address(method: &'static str, v: &Value) -> Result<Address, RpcError> {
    let b = hex_bytes(method, v)?;
    Address::try_from(b.as_slice()).map_err(|_| decode(method, "not 20 bytes"))
}

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

impl Rpc {
    /// A client for `url` (`http://` or `https://`).
    pub fn new(url: &str) -> Rpc {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(RPC_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Rpc {
            agent,
            url: url.to_string(),
            next_id: AtomicU64::new(1),
        }
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One JSON-RPC call.
    pub fn request(&self, method: &'static str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut resp = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(body.to_string())
            .map_err(|e| RpcError::Transport(format!("{}: {e}", self.url)))?;
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .map_err(|e| RpcError::Transport(format!("{}: {e}", self.url)))?;
        let v: Value = serde_json::from_str(&text).map_err(|_| {
            RpcError::Transport(format!(
                "{}: HTTP {} with a body that is not JSON",
                self.url,
                resp.status()
            ))
        })?;
        if let Some(err) = v.get("error") {
            return Err(RpcError::Node {
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                data: err.get("data").and_then(|d| hex_bytes(method, d).ok()),
            });
        }
        v.get("result")
            .cloned()
            .ok_or_else(|| decode(method, "no result"))
    }

    /// `eth_chainId`.
    pub fn chain_id(&self) -> Result<u64, RpcError> {
        small("eth_chainId", &self.request("eth_chainId", json!([]))?)
    }

    /// `eth_gasPrice`.
    pub fn gas_price(&self) -> Result<u128, RpcError> {
        let q = quantity("eth_gasPrice", &self.request("eth_gasPrice", json!([]))?)?;
        u128::try_from(q).map_err(|_| decode("eth_gasPrice", "above 2^128"))
    }

    /// `eth_getTransactionCount` at `pending` (the next nonce the node would accept).
    pub fn nonce(&self, who: Address) -> Result<u64, RpcError> {
        let r = self.request(
            "eth_getTransactionCount",
            json!([who.to_string(), "pending"]),
        )?;
        small("eth_getTransactionCount", &r)
    }

    /// `eth_getTransactionCount` at `latest` (nonces below it are used by mined
    /// transactions).
    pub fn mined_nonce(&self, who: Address) -> Result<u64, RpcError> {
        let r = self.request(
            "eth_getTransactionCount",
            json!([who.to_string(), "latest"]),
        )?;
        small("eth_getTransactionCount", &r)
    }

    /// `eth_call` at `latest`.
    pub fn call(&self, to: Address, data: &[u8]) -> Result<Vec<u8>, RpcError> {
        let r = self.request(
            "eth_call",
            json!([{"to": to.to_string(), "data": hex0x(data)}, "latest"]),
        )?;
        hex_bytes("eth_call", &r)
    }

    /// `eth_estimateGas` for a call from `from`.
    pub fn estimate_gas(&self, from: Address, to: Address, data: &[u8]) -> Result<u64, RpcError> {
        let r = self.request(
            "eth_estimateGas",
            json!([{"from": from.to_string(), "to": to.to_string(), "data": hex0x(data)}]),
        )?;
        small("eth_estimateGas", &r)
    }

    /// `eth_sendRawTransaction`; returns the hash the node computed.
    pub fn send_raw(&self, raw: &[u8]) -> Result<B256, RpcError> {
        let r = self.request("eth_sendRawTransaction", json!([hex0x(raw)]))?;
        b256("eth_sendRawTransaction", &r)
    }

    /// `eth_accounts` (a dev chain's unlocked accounts).
    pub fn accounts(&self) -> Result<Vec<Address>, RpcError> {
        let r = self.request("eth_accounts", json!([]))?;
        r.as_array()
            .ok_or_else(|| decode("eth_accounts", "not an array"))?
            .iter()
            .map(|a| address("eth_accounts", a))
            .collect()
    }

    /// `eth_sendTransaction` from an unlocked account (dev chains only). `to: None` deploys.
    pub fn send_unlocked(
        &self,
        from: Address,
        to: Option<Address>,
        data: &[u8],
        value: U256,
    ) -> Result<B256, RpcError> {
        let mut tx =
            json!({"from": from.to_string(), "data": hex0x(data), "value": format!("{value:#x}")});
        if let Some(to) = to {
            tx["to"] = json!(to.to_string());
        }
        let r = self.request("eth_sendTransaction", json!([tx]))?;
        b256("eth_sendTransaction", &r)
    }

    /// `eth_getTransactionReceipt`; `None` while the transaction is not mined.
    pub fn receipt(&self, hash: B256) -> Result<Option<Receipt>, RpcError> {
        const M: &str = "eth_getTransactionReceipt";
        let r = self.request(M, json!([hash.to_string()]))?;
        if r.is_null() {
            return Ok(None);
        }
        let field = |k: &str| r.get(k).ok_or_else(|| decode(M, format!("no {k}")));
        let logs = field("logs")?
            .as_array()
            .ok_or_else(|| decode(M, "logs not an array"))?
            .iter()
            .map(|l| {
                let topics = l
                    .get("topics")
                    .and_then(Value::as_array)
                    .ok_or_else(|| decode(M, "log without topics"))?
                    .iter()
                    .map(|t| b256(M, t))
                    .collect::<Result<_, _>>()?;
                Ok(Log {
                    address: address(M, l.get("address").unwrap_or(&Value::Null))?,
                    topics,
                    data: hex_bytes(M, l.get("data").unwrap_or(&Value::Null))?,
                })
            })
            .collect::<Result<_, RpcError>>()?;
        let contract_address = match r.get("contractAddress") {
            None | Some(Value::Null) => None,
            Some(a) => Some(address(M, a)?),
        };
        Ok(Some(Receipt {
            hash,
            success: small(M, field("status")?)? == 1,
            gas_used: small(M, field("gasUsed")?)?,
            block: small(M, field("blockNumber")?)?,
            contract_address,
            logs,
        }))
    }

    /// The latest block's timestamp (seconds): the clock close delays run on.
    pub fn latest_timestamp(&self) -> Result<u64, RpcError> {
        const M: &str = "eth_getBlockByNumber";
        let r = self.request(M, json!(["latest", false]))?;
        small(M, r.get("timestamp").unwrap_or(&Value::Null))
    }
}
