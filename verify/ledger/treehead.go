package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TreeHead is a checkpoint of a ledger: its first Size entries have Merkle
// root Root, as of the end of a round.
type TreeHead struct {
	Run   Hash   `json:"run"`
	Round uint64 `json:"round"`
	Size  uint64 `json:"size"`
	Root  Hash   `json:"root"`
}

// treeHeadDomain separates tree-head signatures from every other
// signature made with a peer's key.
const treeHeadDomain = "vtrain/v1/tree-head\x00"

// signedBytes is what a tree head's signature covers.
func (h TreeHead) signedBytes() []byte {
	b := make([]byte, 0, len(treeHeadDomain)+32+8+8+32)
	b = append(b, treeHeadDomain...)
	b = append(b, h.Run[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Round)
	b = binary.BigEndian.AppendUint64(b, h.Size)
	return append(b, h.Root[:]...)
}

// SignedTreeHead is a tree head signed by the peer that keeps the ledger.
type SignedTreeHead struct {
	TreeHead
	Signer string `json:"signer"` // the libp2p peer ID
	Sig    []byte `json:"sig"`
}

// ErrSignature means a tree head's signature does not verify.
var ErrSignature = errors.New("ledger: bad tree head signature")

// SignTreeHead signs h with a peer's key.
func SignTreeHead(h TreeHead, key crypto.PrivKey) (SignedTreeHead, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return SignedTreeHead{}, err
	}
	sig, err := key.Sign(h.signedBytes())
	if err != nil {
		return SignedTreeHead{}, err
	}
	return SignedTreeHead{TreeHead: h, Signer: id.String(), Sig: sig}, nil
}

// Verify checks the signature against the signer's peer ID (which embeds
// or hashes its public key).
func (s SignedTreeHead) Verify() error {
	id, err := peer.Decode(s.Signer)
	if err != nil {
		return fmt.Errorf("%w: signer %q: %v", ErrSignature, s.Signer, err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return fmt.Errorf("%w: signer %s: %v", ErrSignature, s.Signer, err)
	}
	if len(s.Sig) == 0 || len(s.Sig) > 1024 {
		return fmt.Errorf("%w: %d-byte signature", ErrSignature, len(s.Sig))
	}
	ok, err := pub.Verify(s.TreeHead.signedBytes(), s.Sig)
	if err != nil || !ok {
		return fmt.Errorf("%w: by %s", ErrSignature, s.Signer)
	}
	return nil
}
