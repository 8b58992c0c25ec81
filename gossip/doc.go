// Package gossip will move vtrain's bytes between peers: the libp2p host,
// gossipsub topics with validators that Accept, Reject or Ignore, the wire
// messages (protobuf, in pb/), update compression (top-k with error
// feedback, quantization, zstd with bounded decoding), request/response
// streams for state sync and challenge answers, and peer discovery.
//
// It holds no protocol logic: the round state machine lives in trainer/ and
// is driven through this package's transport. Nothing is implemented yet;
// see the decentralized-training issue.
package gossip
