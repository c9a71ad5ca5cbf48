package main

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/deploy-mlflow/deploy-mlflow/internal/serverenv"
)

// MLflow's envelope encryption of AI Gateway provider keys (mlflow/utils/crypto.py, 3.17): each key is
// encrypted under its own data key (DEK); the DEK is stored wrapped, AES-256-GCM with a 12-byte nonce in
// front and no associated data, under the KEK; the KEK is PBKDF2-HMAC-SHA256 of the passphrase with
// kekSalt followed by the KEK version as 4 big-endian bytes, 600,000 rounds, 32 bytes. Each row of the
// secrets table records the version that wrapped its DEK; MLflow unwraps with one version,
// MLFLOW_CRYPTO_KEK_VERSION (default 1).
const (
	mlflowDefaultKEKPassphrase = "mlflow-default-kek-passphrase-for-development-only"
	kekSalt                    = "mlflow-secrets-kek-v1-2025"
	kekRounds                  = 600_000
	gcmNonceSize               = 12
)

// deriveKEK derives MLflow's KEK for passphrase ("" is MLflow's default) and version.
func deriveKEK(passphrase string, version int) []byte {
	if passphrase == "" {
		passphrase = mlflowDefaultKEKPassphrase
	}
	salt := binary.BigEndian.AppendUint32([]byte(kekSalt), uint32(version))
	key, err := pbkdf2.Key(sha256.New, passphrase, salt, kekRounds, 32)
	if err != nil {
		panic(err) // only for lengths and FIPS limits that do not apply here
	}
	return key
}

// unwraps reports whether kek opens a wrapped DEK; GCM's tag makes a wrong KEK fail, never decrypt to garbage.
func unwraps(kek, wrapped []byte) bool {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return false
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil || len(wrapped) < gcmNonceSize+gcm.Overhead() {
		return false
	}
	_, err = gcm.Open(nil, wrapped[:gcmNonceSize], wrapped[gcmNonceSize:], nil)
	return err == nil
}

// storedKey is one row of MLflow's secrets table, as checkKEK reads it.
type storedKey struct {
	name       string
	wrappedDEK []byte
	version    int
}

// checkKEK makes sure that MLflow will be able to read the gateway keys stored in the database: a
// passphrase that changed without `mlflow crypto rotate-kek` would leave every one of them unreadable,
// and MLflow would notice only when a key is used. MLflow cannot re-wrap the keys without the old
// passphrase, which the server does not have, so it refuses to start and says how to rotate.
//
// version is MLFLOW_CRYPTO_KEK_VERSION, 0 when unset: then the version is the one the stored keys carry
// (rotate-kek moves them all to the next), returned as a setting for MLflow, so that a rotation needs no
// second setting changed.
func checkKEK(ctx context.Context, log *logger, conn *pgx.Conn, passphrase string, version int) ([]string, error) {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('secrets') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("look for MLflow's gateway keys: %w", err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := conn.Query(ctx, `SELECT DISTINCT ON (kek_version) secret_name, wrapped_dek, kek_version FROM secrets ORDER BY kek_version, secret_id`)
	if err != nil {
		return nil, fmt.Errorf("read MLflow's gateway keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (storedKey, error) {
		var k storedKey
		err := r.Scan(&k.name, &k.wrappedDEK, &k.version)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("read MLflow's gateway keys: %w", err)
	}
	extra, err := judgeKEK(keys, passphrase, version, deriveKEK)
	if err == nil && len(keys) > 0 {
		log.info("the KEK passphrase opens the AI Gateway keys stored in the database", "event", "kek-checked", "kekVersions", len(keys))
	}
	return extra, err
}

// judgeKEK decides, from one stored key of each KEK version, whether MLflow can read them all; see checkKEK.
func judgeKEK(keys []storedKey, passphrase string, version int, derive func(string, int) []byte) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	var extra []string
	if version == 0 {
		if len(keys) > 1 {
			return nil, fmt.Errorf("the AI Gateway keys in the database are wrapped under %d KEK versions (%d to %d), and MLflow reads one: set %s to the current one, and re-create the keys of the others in MLflow",
				len(keys), keys[0].version, keys[len(keys)-1].version, kekVersionEnv)
		}
		version = keys[0].version
		if version != 1 {
			extra = append(extra, kekVersionEnv+"="+strconv.Itoa(version))
		}
	}
	how := func(v int) string {
		return fmt.Sprintf("deploy again with the passphrase the keys were stored with, or re-wrap them under the new one: with the service stopped, run "+
			"MLFLOW_CRYPTO_KEK_PASSPHRASE='<old passphrase>' MLFLOW_CRYPTO_KEK_VERSION=%d mlflow crypto rotate-kek --new-passphrase '<new passphrase>' --backend-store-uri '<backend store URI>' --yes, "+
			"then deploy with the new passphrase (the server reads the new KEK version, %d, from the database)", v, v+1)
	}
	for _, k := range keys {
		if k.version != version {
			return nil, fmt.Errorf("the AI Gateway key %q in the database is wrapped under KEK version %d, but %s is %d: set it to %d, or leave it unset for the server to read it from the database",
				k.name, k.version, kekVersionEnv, version, k.version)
		}
		if !unwraps(derive(passphrase, version), k.wrappedDEK) {
			which := serverenv.KEKPassphrase + " does not"
			if passphrase == "" {
				which = serverenv.KEKPassphrase + " is not set, and MLflow's default passphrase does not"
			}
			return nil, fmt.Errorf("%s open the AI Gateway keys stored in the database (key %q, KEK version %d): the passphrase changed, and MLflow could read none of them. Refusing to start: %s",
				which, k.name, version, how(version))
		}
	}
	return extra, nil
}
