package localcloud

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"cloud.google.com/go/run/apiv2/runpb"
)

// Secret volumes as Cloud Run mounts them (SecretVolumeSource and VersionToPath in the v2 reference,
// https://cloud.google.com/run/docs/reference/rpc/google.cloud.run.v2#secretvolumesource, and "Configure
// secrets for services", https://cloud.google.com/run/docs/configuring/services/secrets): the volume is a
// directory at the mount's mount_path, replacing whatever the image had there, holding one read-only file
// per item (its path, the version it names); with no items, one file named after the secret holding its
// latest version. A file's mode is the item's mode, else the volume's default_mode, else 0444, and
// "a umask of 0222 will be applied to any non-zero value".

// defaultSecretMode is default_mode's documented default.
const defaultSecretMode fs.FileMode = 0o444

// secretDir is one secret volume mounted in the container: the files it holds, not yet read.
type secretDir struct {
	Volume string // the volume's field in the spec, for errors
	Dir    string // mount_path
	Files  []secretFile
}

// secretFile is one file of a secret volume: which version of which secret it holds.
type secretFile struct {
	Path            string // relative to the mount path
	Project, Secret string
	Version         string
	Mode            fs.FileMode
}

// secretDirs lists the secret volumes ctr mounts, checked as far as the local runtime needs: every
// mount names a volume, volumes are secrets or Cloud SQL (which mounts nothing here), and no mount uses
// sub_path. project is the service's, for secrets named by ID alone.
func secretDirs(project string, rev *runpb.Revision, ctr *runpb.Container) ([]secretDir, error) {
	volumes := map[string]int{}
	for i, v := range rev.GetVolumes() {
		switch {
		case v.GetSecret() != nil, v.GetCloudSqlInstance() != nil:
			volumes[v.GetName()] = i
		default:
			return nil, fmt.Errorf("spec.template.spec.volumes[%d] (%q): the local runtime mounts secret and Cloud SQL volumes only", i, v.GetName())
		}
	}
	var dirs []secretDir
	for i, m := range ctr.GetVolumeMounts() {
		vi, ok := volumes[m.GetName()]
		if !ok {
			return nil, fmt.Errorf("spec.template.spec.containers[0].volume_mounts[%d]: no volume named %q", i, m.GetName())
		}
		src := rev.GetVolumes()[vi].GetSecret()
		if src == nil {
			continue
		}
		if m.GetSubPath() != "" {
			return nil, fmt.Errorf("spec.template.spec.containers[0].volume_mounts[%d].sub_path: the local runtime does not mount part of a volume; leave sub_path empty", i)
		}
		field := fmt.Sprintf("spec.template.spec.volumes[%d].secret", vi)
		files, err := secretVolumeFiles(project, src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		dirs = append(dirs, secretDir{Volume: field, Dir: path.Clean(m.GetMountPath()), Files: files})
	}
	// A parent directory is mounted before what lies in it, or it would hide it.
	sort.SliceStable(dirs, func(i, j int) bool { return dirs[i].Dir < dirs[j].Dir })
	return dirs, nil
}

// secretVolumeFiles is what a secret volume holds.
func secretVolumeFiles(project string, src *runpb.SecretVolumeSource) ([]secretFile, error) {
	secretProject, secret := project, src.GetSecret()
	if p := strings.Split(secret, "/"); len(p) == 4 && p[0] == "projects" && p[2] == "secrets" {
		secretProject, secret = p[1], p[3]
	}
	defaultMode := fileMode(src.GetDefaultMode(), defaultSecretMode)
	if len(src.GetItems()) == 0 {
		return []secretFile{{Path: secret, Project: secretProject, Secret: secret, Version: "latest", Mode: defaultMode}}, nil
	}
	files := make([]secretFile, 0, len(src.GetItems()))
	for i, it := range src.GetItems() {
		p := path.Clean(it.GetPath())
		if it.GetPath() == "" || path.IsAbs(p) || p == "." || p == ".." || strings.HasPrefix(p, "../") {
			return nil, fmt.Errorf("items[%d].path %q: give a file name relative to the mount path", i, it.GetPath())
		}
		version := it.GetVersion()
		if version == "" {
			return nil, fmt.Errorf("items[%d].version: an item names the version it holds (a number, an alias or latest)", i)
		}
		files = append(files, secretFile{Path: p, Project: secretProject, Secret: secret, Version: version, Mode: fileMode(it.GetMode(), defaultMode)})
	}
	return files, nil
}

// fileMode is mode, or def when mode is 0, less the write bits (Cloud Run's umask of 0222).
func fileMode(mode int32, def fs.FileMode) fs.FileMode {
	m := def
	if mode != 0 {
		m = fs.FileMode(mode) & fs.ModePerm
	}
	return m &^ 0o222
}

// filledDir is a secret volume with its files' contents, ready to mount.
type filledDir struct {
	Dir   string
	Files []filledFile
}

type filledFile struct {
	Path string
	Mode fs.FileMode
	Data []byte
}

// readSecretDirs reads every file's secret version through r.Secrets, as the runtime service account.
// Cloud Run reads a mounted secret when the file is read, and a read fails while the secret is
// unreadable; this runtime reads them once, before the process starts, and fails the revision instead.
func (r *Runtime) readSecretDirs(ctx context.Context, dirs []secretDir) ([]filledDir, error) {
	out := make([]filledDir, 0, len(dirs))
	for _, d := range dirs {
		fd := filledDir{Dir: d.Dir}
		for _, f := range d.Files {
			if r.Secrets == nil {
				return nil, fmt.Errorf("%s: no secret resolver", d.Volume)
			}
			data, err := r.Secrets(ctx, f.Project, f.Secret, f.Version)
			if err != nil {
				return nil, fmt.Errorf("%s: reading projects/%s/secrets/%s/versions/%s for %s: %w",
					d.Volume, f.Project, f.Secret, f.Version, path.Join(d.Dir, f.Path), err)
			}
			fd.Files = append(fd.Files, filledFile{Path: f.Path, Mode: f.Mode, Data: data})
		}
		out = append(out, fd)
	}
	return out, nil
}
