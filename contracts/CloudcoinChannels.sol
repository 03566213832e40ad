// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.28;

/// Only the ERC-20 calls the channels make.
interface IERC20 {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// @title CloudcoinChannels: unidirectional payment channels in one ERC-20 token.
/// @notice A payer locks a deposit for one payee. Off chain the payer signs EIP-712 vouchers
/// whose `cumulativeAmount` only grows; the payee may `claim` the newest one any number of
/// times and is paid the increment over what it already claimed, never more than the deposit.
/// The payer leaves with `requestClose`, waits `closeDelay` seconds (the payee's window to
/// claim), then `withdraw`s what was not claimed. No fees: only the chain's gas.
///
/// Invariants (per channel): claimed <= deposit; claimed never decreases; the contract holds at
/// least the sum of (deposit - claimed) over open channels.
contract CloudcoinChannels {
    struct Channel {
        address payer;
        address payee;
        uint256 deposit; // total locked by the payer
        uint256 claimed; // total paid to the payee so far
        uint64 closeDelay; // seconds between requestClose and withdraw
        uint64 closeAt; // 0 while open; else the earliest time withdraw succeeds
    }

    /// The token every channel of this contract is denominated in (fixed: one contract, one
    /// token, so a voucher can never be redeemed in some other token).
    IERC20 public immutable token;
    mapping(bytes32 => Channel) public channels;
    /// Per payer, so channel ids never repeat even when a payer reopens to the same payee.
    mapping(address => uint256) public nonces;

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("CloudcoinChannels");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// The off-chain voucher fields, with the widths the node uses (docs/ledger.md).
    bytes32 public constant VOUCHER_TYPEHASH = keccak256(
        "Voucher(bytes32 channelId,uint64 seq,uint256 cumulativeAmount,uint64 cumulativeBytes,uint32 priceEpoch)"
    );
    /// secp256k1 group order / 2: signatures with a larger s are the malleated twin of a valid
    /// one (EIP-2); refusing them makes each voucher have one encoding.
    uint256 private constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

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

    constructor(IERC20 token_) {
        if (address(token_).code.length == 0) revert NoToken();
        token = token_;
    }

    /// Locks `amount` (pulled with transferFrom: approve first) for `payee`.
    function open(address payee, uint256 amount, uint64 closeDelay) external returns (bytes32 channelId) {
        if (payee == address(0) || payee == msg.sender) revert BadPayee();
        if (amount == 0) revert ZeroAmount();
        uint256 nonce = nonces[msg.sender]++;
        // The contract address is in the EIP-712 domain, so the id need not include it.
        channelId = keccak256(abi.encode(msg.sender, payee, nonce));
        channels[channelId] = Channel(msg.sender, payee, amount, 0, closeDelay, 0);
        emit Opened(channelId, msg.sender, payee, amount, closeDelay);
        _pull(msg.sender, amount);
    }

    /// Adds to the deposit. Only the payer, and not once closing: a top-up during the delay
    /// would be withdrawn moments later and only muddy the payee's accounting.
    function topUp(bytes32 channelId, uint256 amount) external {
        Channel storage c = _channel(channelId);
        if (msg.sender != c.payer) revert NotPayer();
        if (c.closeAt != 0) revert Closing();
        if (amount == 0) revert ZeroAmount();
        c.deposit += amount;
        emit ToppedUp(channelId, amount, c.deposit);
        _pull(msg.sender, amount);
    }

    /// Pays the payee what the voucher owes beyond what was already claimed, capped at the
    /// deposit. Anyone may submit it (a relayer paying the gas); the money only goes to the
    /// payee. A replayed or older voucher has cumulativeAmount <= claimed and is refused.
    /// Allowed until the payer withdraws: the delay only bounds how long the payee must watch.
    /// `seq` is signed but not enforced: cumulativeAmount is the quantity that must only grow;
    /// seq orders vouchers off chain.
    function claim(
        bytes32 channelId,
        uint64 seq,
        uint256 cumulativeAmount,
        uint64 cumulativeBytes,
        uint32 priceEpoch,
        bytes calldata signature
    ) external {
        Channel storage c = _channel(channelId);
        bytes32 structHash =
            keccak256(abi.encode(VOUCHER_TYPEHASH, channelId, seq, cumulativeAmount, cumulativeBytes, priceEpoch));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
        if (_recover(digest, signature) != c.payer) revert BadSignature();

        // Never more than the deposit: an over-signed voucher pays what is there, and the rest
        // later if the payer tops up.
        uint256 owed = cumulativeAmount < c.deposit ? cumulativeAmount : c.deposit;
        if (owed <= c.claimed) revert NothingToClaim();
        uint256 pay = owed - c.claimed;
        c.claimed = owed; // effects before the transfer (checks-effects-interactions)
        emit Claimed(channelId, c.payee, pay, owed, seq);
        _push(c.payee, pay);
    }

    /// The payer starts the close delay. Idempotent calls are refused so closeAt cannot be
    /// pushed around.
    function requestClose(bytes32 channelId) external {
        Channel storage c = _channel(channelId);
        if (msg.sender != c.payer) revert NotPayer();
        if (c.closeAt != 0) revert Closing();
        uint64 closeAt = uint64(block.timestamp) + c.closeDelay;
        c.closeAt = closeAt;
        emit CloseRequested(channelId, closeAt);
    }

    /// After the delay the payer takes back deposit - claimed and the channel is gone (ids are
    /// never reused, so a late claim finds no channel).
    function withdraw(bytes32 channelId) external {
        Channel storage c = _channel(channelId);
        if (msg.sender != c.payer) revert NotPayer();
        if (c.closeAt == 0) revert NotClosing();
        if (block.timestamp < c.closeAt) revert TooEarly();
        uint256 rest = c.deposit - c.claimed;
        address payer = c.payer;
        delete channels[channelId];
        emit Withdrawn(channelId, payer, rest);
        if (rest != 0) _push(payer, rest);
    }

    /// Computed per call from block.chainid, so after a chain split vouchers signed for one
    /// chain do not verify on the other.
    function domainSeparator() public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _channel(bytes32 channelId) private view returns (Channel storage c) {
        c = channels[channelId];
        if (c.payer == address(0)) revert NoChannel();
    }

    /// 65-byte r || s || v. Refuses high s (malleability), v other than 27/28, and the zero
    /// address ecrecover returns for an invalid signature (explicitly, rather than relying on
    /// no channel having payer 0).
    function _recover(bytes32 digest, bytes calldata sig) private pure returns (address signer) {
        if (sig.length != 65) revert BadSignature();
        bytes32 r = bytes32(sig[0:32]);
        bytes32 s = bytes32(sig[32:64]);
        uint8 v = uint8(sig[64]);
        if (uint256(s) > HALF_N) revert BadSignature();
        if (v != 27 && v != 28) revert BadSignature();
        signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert BadSignature();
    }

    /// Tolerates tokens that return nothing (pre-ERC-20-final ones) as well as bool.
    function _pull(address from, uint256 amount) private {
        _call(abi.encodeCall(IERC20.transferFrom, (from, address(this), amount)));
    }

    function _push(address to, uint256 amount) private {
        _call(abi.encodeCall(IERC20.transfer, (to, amount)));
    }

    function _call(bytes memory data) private {
        (bool ok, bytes memory ret) = address(token).call(data);
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TokenTransferFailed();
    }
}
