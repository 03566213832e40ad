// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

/// @title Cloudcoin: a minimal ERC-20 for dev chains only.
/// @notice Production deployments point CloudcoinChannels at an existing token; this one exists
/// so tests and `bitcloud ledger deploy` on a local chain have a token to move. Self-contained
/// (no OpenZeppelin) so the compile is offline and the whole file can be read in a minute.
contract Cloudcoin {
    string public constant name = "Cloudcoin";
    string public constant symbol = "CC";
    uint8 public constant decimals = 18;

    /// The deployer: the only account that may mint (a dev-chain faucet, nothing more).
    address public immutable minter;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    error NotMinter();
    error InsufficientBalance();
    error InsufficientAllowance();
    error ZeroAddress();

    constructor() {
        minter = msg.sender;
    }

    function mint(address to, uint256 value) external {
        if (msg.sender != minter) revert NotMinter();
        if (to == address(0)) revert ZeroAddress();
        // Checked arithmetic (0.8): an overflowing supply reverts.
        totalSupply += value;
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        // The usual convention: an allowance of 2^256-1 is unlimited and never decremented.
        if (allowed != type(uint256).max) {
            if (allowed < value) revert InsufficientAllowance();
            allowance[from][msg.sender] = allowed - value;
        }
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) private {
        if (to == address(0)) revert ZeroAddress();
        uint256 have = balanceOf[from];
        if (have < value) revert InsufficientBalance();
        balanceOf[from] = have - value;
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
