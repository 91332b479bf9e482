#include "common/base/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"

namespace alignd {
namespace {

absl::Status ErrnoStatus(int err, absl::string_view what, absl::string_view path) {
  std::string msg = absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "cannot stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, expected a file"));
  }
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus(err, "read failed", path);
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  ::close(fd);
  return out;
}

absl::Status WriteFileAtomic(const std::string& path, absl::string_view contents) {
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "cannot create", tmp);
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoStatus(err, "write failed", tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "flush failed", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "rename failed", path);
  }
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& path) {
  if (path.empty()) return absl::OkStatus();
  std::string partial;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || (path[i] == '/' && i > 0)) {
      partial = path.substr(0, i);
      struct stat st;
      if (::stat(partial.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
          return absl::FailedPreconditionError(absl::StrCat(partial, ": exists and is not a directory"));
        }
        continue;
      }
      if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
        return ErrnoStatus(errno, "cannot create directory", partial);
      }
    }
  }
  return absl::OkStatus();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string JoinPath(absl::string_view a, absl::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  bool a_slash = a.back() == '/';
  bool b_slash = b.front() == '/';
  if (a_slash && b_slash) return absl::StrCat(a, b.substr(1));
  if (a_slash || b_slash) return absl::StrCat(a, b);
  return absl::StrCat(a, "/", b);
}

absl::Status WriteDirAtomically(const std::string& dir,
                                const std::function<absl::Status(const std::string& staging)>& write) {
  namespace fs = std::filesystem;
  const fs::path target(dir);
  if (target.has_parent_path()) RETURN_IF_ERROR(MakeDirs(target.parent_path().string()));
  const std::string staging = absl::StrCat(dir, ".partial-", ::getpid());
  std::error_code ec;
  fs::remove_all(staging, ec);  // left by an earlier process with this pid that died mid-write
  RETURN_IF_ERROR(MakeDirs(staging));
  absl::Status written = write(staging);
  if (!written.ok()) {
    fs::remove_all(staging, ec);
    return written;
  }
  const std::string old = absl::StrCat(dir, ".old-", ::getpid());
  const bool had_old = fs::exists(target, ec);
  if (had_old) {
    fs::remove_all(old, ec);
    fs::rename(target, old, ec);
    if (ec) {
      const std::string message = ec.message();
      fs::remove_all(staging, ec);
      return absl::InternalError(absl::StrCat(dir, ": cannot move the previous folder aside: ", message));
    }
  }
  fs::rename(staging, target, ec);
  if (ec) {
    const std::string message = ec.message();
    if (had_old) fs::rename(old, target, ec);
    fs::remove_all(staging, ec);
    return absl::InternalError(absl::StrCat(dir, ": cannot rename the new folder into place: ", message));
  }
  if (had_old) fs::remove_all(old, ec);
  return absl::OkStatus();
}

}  // namespace alignd
