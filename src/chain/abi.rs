//! The contracts' interfaces as Solidity signatures (`sol!`), and their committed bytecode.
//! Invariant: these declarations match `contracts/*.sol`; the contract tests in
//! `tests/ledger_contracts.rs` call every function through them, so a drift fails there.

use alloy_sol_types::sol;

sol! {
    /// `contracts/CloudcoinChannels.sol`.
    #[derive(Debug, PartialEq, Eq)]
    interface ICloudcoinChannels {
        event Opened(bytes32 indexed channelId, address indexed payer, address indexed payee, uint256 deposit, uint64 closeDelay);
        event ToppedUp(bytes32 indexed channelId, uint256 amount, uint256 deposit);
        event Claimed(bytes32 indexed channelId, address indexed payee, uint256 paid, uint256 claimed, uint64 seq);
        event CloseRequested(bytes32 indexed channelId, uint64 closeAt);
        event Withdrawn(bytes32 indexed channelId, address indexed payer, uint256 amount);

        error NoToken();
        error BadPayee();
        error ZeroAmount();
        error NoChannel();
        error NotPayer();
        error Closing();
        error NotClosing();
        error TooEarly();
        error BadSignature();
        error NothingToClaim();
        error TokenTransferFailed();

        function token() external view returns (address);
        function channels(bytes32 channelId) external view returns (address payer, address payee, uint256 deposit, uint256 claimed, uint64 closeDelay, uint64 closeAt);
        function nonces(address payer) external view returns (uint256);
        function domainSeparator() external view returns (bytes32);
        function open(address payee, uint256 amount, uint64 closeDelay) external returns (bytes32 channelId);
        function topUp(bytes32 channelId, uint256 amount) external;
        function claim(bytes32 channelId, uint64 seq, uint256 cumulativeAmount, uint64 cumulativeBytes, uint32 priceEpoch, bytes signature) external;
        function requestClose(bytes32 channelId) external;
        function withdraw(bytes32 channelId) external;
    }

    /// `contracts/Cloudcoin.sol` (the dev-chain token; production uses any ERC-20).
    #[derive(Debug, PartialEq, Eq)]
    interface ICloudcoin {
        function decimals() external view returns (uint8);
        function balanceOf(address owner) external view returns (uint256);
        function mint(address to, uint256 value) external;
        function approve(address spender, uint256 value) external returns (bool);
        function transfer(address to, uint256 value) external returns (bool);
        function allowance(address owner, address spender) external view returns (uint256);
    }
}

/// The name of a `CloudcoinChannels` custom error from revert data ("NothingToClaim"), if the
/// data is one.
pub fn revert_name(data: &[u8]) -> Option<String> {
    use alloy_sol_types::SolInterface;
    let e = ICloudcoinChannels::ICloudcoinChannelsErrors::abi_decode(data).ok()?;
    let dbg = format!("{e:?}");
    Some(dbg.split('(').next().unwrap_or(&dbg).to_string())
}

/// The compiled `Cloudcoin` artifact (`scripts/compile-contracts.sh`).
pub const CLOUDCOIN_JSON: &str = include_str!("../../contracts/build/Cloudcoin.json");
/// The compiled `CloudcoinChannels` artifact.
pub const CHANNELS_JSON: &str = include_str!("../../contracts/build/CloudcoinChannels.json");

/// Why an artifact's bytecode could not be read.
#[derive(Debug, thiserror::Error)]
#[error("contract artifact: {0}")]
pub struct ArtifactError(String);

/// The creation bytecode of a committed artifact.
pub fn creation_code(artifact_json: &str) -> Result<Vec<u8>, ArtifactError> {
    let v: serde_json::Value =
        serde_json::from_str(artifact_json).map_err(|e| ArtifactError(e.to_string()))?;
    let hex_code = v
        .get("bytecode")
        .and_then(|b| b.as_str())
        .ok_or_else(|| ArtifactError("no bytecode".into()))?;
    hex::decode(hex_code.trim_start_matches("0x")).map_err(|e| ArtifactError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_sol_types::SolCall;

    #[test]
    fn revert_names_decode() {
        use alloy_sol_types::SolError;
        let data = ICloudcoinChannels::NothingToClaim {}.abi_encode();
        assert_eq!(revert_name(&data).as_deref(), Some("NothingToClaim"));
        assert_eq!(revert_name(&[1, 2, 3, 4]), None);
        assert_eq!(revert_name(&[]), None);
    }

    #[test]
    fn artifacts_have_code() {
        assert!(creation_code(CLOUDCOIN_JSON).unwrap().len() > 1000);
        assert!(creation_code(CHANNELS_JSON).unwrap().len() > 3000);
    }

    #[test]
    fn selectors_match_the_compiled_abi() {
        // solc's ABI lists every function; a signature we got wrong has a selector it lacks.
        let v: serde_json::Value = serde_json::from_str(CHANNELS_JSON).unwrap();
        let names: Vec<String> = v["abi"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "function")
            .map(|e| {
                let ins: Vec<String> = e["inputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["type"].as_str().unwrap().to_string())
                    .collect();
                format!("{}({})", e["name"].as_str().unwrap(), ins.join(","))
            })
            .collect();
        for sig in [
            ICloudcoinChannels::claimCall::SIGNATURE,
            ICloudcoinChannels::openCall::SIGNATURE,
            ICloudcoinChannels::topUpCall::SIGNATURE,
            ICloudcoinChannels::requestCloseCall::SIGNATURE,
            ICloudcoinChannels::withdrawCall::SIGNATURE,
            ICloudcoinChannels::channelsCall::SIGNATURE,
        ] {
            assert!(names.iter().any(|n| n == sig), "{sig} not in {names:?}");
        }
    }
}
