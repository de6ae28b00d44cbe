! Examples/mpi/ring.f90: the simplest transfer of libvkverbs from Fortran (ISO_C_BINDING, MPI).
!
! Every rank registers two arrays of its own (host memory: vkv_memory_register_host), forms a
! vkv_group whose allgather callback is MPI_Allgather (a Fortran procedure with BIND(C)),
! publishing its inbox's remote descriptor, RDMA-writes its source array into its right
! neighbour's inbox and checks what its left neighbour wrote, element by element.
! Vulkan memory needs the application's own VkDevice (see ring.c); this example keeps to the
! library's calls that Fortran reaches without Vulkan.
!
! Build: mpifort ring.f90 $(pkg-config --cflags --libs vkverbs)
! Run:   mpirun -np N ./ring-f90   (VKVERBS_RDMA_DEVICE, VKVERBS_FABRIC_ADDR: this rank's device
!        and IP address on it). Exit status 0 only when every rank verified its inbox.
module vkverbs
  use, intrinsic :: iso_c_binding
  implicit none
  integer(c_int), parameter :: VKV_OK = 0
  integer(c_int32_t), parameter :: VKV_ACCESS_LOCAL_WRITE = 1, VKV_ACCESS_REMOTE = 7
  integer, parameter :: VKV_REMOTE_DESCRIPTOR_SIZE = 20
  interface
    ! name: a NUL-terminated string, or c_null_ptr for the first device with an active port
    integer(c_int) function vkv_device_open(name, out) bind(C, name="vkv_device_open")
      import :: c_int, c_ptr
      type(c_ptr), value :: name
      type(c_ptr), intent(out) :: out
    end function
    integer(c_int) function vkv_device_close(device) bind(C, name="vkv_device_close")
      import :: c_int, c_ptr
      type(c_ptr), value :: device
    end function
    integer(c_int) function vkv_memory_register_host(device, address, length, access, out) &
        bind(C, name="vkv_memory_register_host")
      import :: c_int, c_ptr, c_size_t, c_int32_t
      type(c_ptr), value :: device, address
      integer(c_size_t), value :: length
      integer(c_int32_t), value :: access
      type(c_ptr), intent(out) :: out
    end function
    integer(c_int) function vkv_memory_remote_descriptor(memory, descriptor) &
        bind(C, name="vkv_memory_remote_descriptor")
      import :: c_int, c_ptr, c_int8_t
      type(c_ptr), value :: memory
      integer(c_int8_t), intent(out) :: descriptor(*)
    end function
    integer(c_int) function vkv_memory_close(memory) bind(C, name="vkv_memory_close")
      import :: c_int, c_ptr
      type(c_ptr), value :: memory
    end function
    integer(c_int) function vkv_group_create(device, address, rank, size, neighbours, neighbour_count, &
        descriptor, descriptor_length, allgather, user, timeout_ms, failed_member, out) &
        bind(C, name="vkv_group_create")
      import :: c_int, c_ptr, c_char, c_int32_t, c_int8_t, c_size_t, c_funptr
      type(c_ptr), value :: device
      character(kind=c_char), intent(in) :: address(*)
      integer(c_int32_t), value :: rank, size
      integer(c_int32_t), intent(in) :: neighbours(*)
      integer(c_int32_t), value :: neighbour_count
      integer(c_int8_t), intent(in) :: descriptor(*)
      integer(c_size_t), value :: descriptor_length
      type(c_funptr), value :: allgather
      type(c_ptr), value :: user
      integer(c_int32_t), value :: timeout_ms
      integer(c_int32_t), intent(out) :: failed_member
      type(c_ptr), intent(out) :: out
    end function
    integer(c_int) function vkv_group_descriptor(group, rank, buffer, capacity, length) &
        bind(C, name="vkv_group_descriptor")
      import :: c_int, c_ptr, c_int32_t, c_int8_t, c_size_t
      type(c_ptr), value :: group
      integer(c_int32_t), value :: rank
      integer(c_int8_t), intent(out) :: buffer(*)
      integer(c_size_t), value :: capacity
      integer(c_size_t), intent(out) :: length
    end function
    integer(c_int) function vkv_group_write(group, rank, memory, offset, length, remote, remote_offset, &
        timeout_ms) bind(C, name="vkv_group_write")
      import :: c_int, c_ptr, c_int32_t, c_int64_t, c_int8_t
      type(c_ptr), value :: group, memory
      integer(c_int32_t), value :: rank, timeout_ms
      integer(c_int64_t), value :: offset, length, remote_offset
      integer(c_int8_t), intent(in) :: remote(*)
    end function
    integer(c_int) function vkv_group_close(group) bind(C, name="vkv_group_close")
      import :: c_int, c_ptr
      type(c_ptr), value :: group
    end function
    type(c_ptr) function vkv_status_string(status) bind(C, name="vkv_status_string")
      import :: c_ptr, c_int
      integer(c_int), value :: status
    end function
    type(c_ptr) function vkv_last_error_message() bind(C, name="vkv_last_error_message")
      import :: c_ptr
    end function
    integer(c_size_t) function c_strlen(s) bind(C, name="strlen")
      import :: c_size_t, c_ptr
      type(c_ptr), value :: s
    end function
  end interface
contains
  ! A C string (static or the library's) as a Fortran string.
  function c_string(p) result(s)
    type(c_ptr), intent(in) :: p
    character(len=:), allocatable :: s
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: s)
    do i = 1, n
      s(i:i) = chars(i)
    end do
  end function
end module vkverbs

module gather_callback
  use, intrinsic :: iso_c_binding
  use mpi_f08
  implicit none
  integer :: world_size = 0
contains
  ! vkv_allgather_fn: every member's record, in rank order, through MPI_Allgather; user points
  ! to the communicator's handle (MPI_Comm%MPI_VAL).
  integer(c_int) function gather(mine, all, n, user) bind(C)
    type(c_ptr), value :: mine, all, user
    integer(c_size_t), value :: n
    integer(c_int8_t), pointer :: m(:), a(:)
    integer(c_int), pointer :: handle
    type(MPI_Comm) :: comm
    integer :: ierror
    call c_f_pointer(user, handle)
    comm%MPI_VAL = handle
    if (n > int(huge(0), c_size_t) / max(world_size, 1)) then
      gather = -1
      return
    end if
    call c_f_pointer(mine, m, [n])
    call c_f_pointer(all, a, [n * int(world_size, c_size_t)])
    call MPI_Allgather(m, int(n), MPI_BYTE, a, int(n), MPI_BYTE, comm, ierror)
    gather = int(ierror, c_int)
  end function
end module gather_callback

program ring_f90
  use, intrinsic :: iso_c_binding
  use, intrinsic :: iso_fortran_env, only: output_unit
  use mpi_f08
  use vkverbs
  use gather_callback
  implicit none
  integer, parameter :: n = 65536
  integer(c_int32_t), target, allocatable :: source(:), inbox(:)
  integer(c_int8_t) :: descriptor(VKV_REMOTE_DESCRIPTOR_SIZE), remote(VKV_REMOTE_DESCRIPTOR_SIZE)
  integer(c_int32_t) :: neighbours(1), failed_member
  integer(c_size_t) :: got
  type(c_ptr) :: device = c_null_ptr, src_mem = c_null_ptr, inbox_mem = c_null_ptr, group = c_null_ptr
  character(len=64) :: device_name, address
  character(kind=c_char, len=65), target :: c_name
  integer(c_int), target :: comm_handle
  integer :: rank, ierror, i, left, right, bad, ok, all_ok, status_len
  integer(c_int) :: s
  integer(c_int64_t), parameter :: bytes = 4_c_int64_t * n
  integer(c_int32_t), parameter :: timeout_ms = 60000

  call MPI_Init(ierror)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierror)
  call MPI_Comm_size(MPI_COMM_WORLD, world_size, ierror)
  right = mod(rank + 1, world_size)
  left = mod(rank + world_size - 1, world_size)
  call get_environment_variable("VKVERBS_RDMA_DEVICE", device_name, status=status_len)
  if (status_len /= 0) device_name = ""
  call get_environment_variable("VKVERBS_FABRIC_ADDR", address, status=status_len)
  ok = 1
  if (status_len /= 0 .or. world_size < 2) then
    if (rank == 0) write(*, '(a)') "ring(f90): needs 2 or more ranks and VKVERBS_FABRIC_ADDR (this rank's address)"
    ok = 0
  end if

  allocate(source(n), inbox(n))
  do i = 1, n
    source(i) = int(rank, c_int32_t) * 1000003_c_int32_t + int(i, c_int32_t) * 7_c_int32_t
  end do
  inbox = -1

  if (ok == 1) then
    ! No name: the first device with an active port.
    if (len_trim(device_name) > 0) then
      c_name = trim(device_name) // c_null_char
      s = vkv_device_open(c_loc(c_name), device)
    else
      s = vkv_device_open(c_null_ptr, device)
    end if
    if (s == VKV_OK) s = vkv_memory_register_host(device, c_loc(source), int(bytes, c_size_t), &
                                                  VKV_ACCESS_LOCAL_WRITE, src_mem)
    if (s == VKV_OK) s = vkv_memory_register_host(device, c_loc(inbox), int(bytes, c_size_t), &
                                                  VKV_ACCESS_REMOTE, inbox_mem)
    if (s == VKV_OK) s = vkv_memory_remote_descriptor(inbox_mem, descriptor)
    if (s /= VKV_OK) call fail("setup")
  end if
  call agree()

  write(*, '(a,i0,a)') "ring(f90) rank ", rank, ": arrays registered; forming the group"
  flush(output_unit)
  neighbours(1) = int(right, c_int32_t)
  comm_handle = int(MPI_COMM_WORLD%MPI_VAL, c_int)
  s = vkv_group_create(device, trim(address) // c_null_char, int(rank, c_int32_t), int(world_size, c_int32_t), &
                       neighbours, 1_c_int32_t, descriptor, int(VKV_REMOTE_DESCRIPTOR_SIZE, c_size_t), &
                       c_funloc(gather), c_loc(comm_handle), timeout_ms, failed_member, group)
  if (s /= VKV_OK) then
    call fail("vkv_group_create")
    write(*, '(a,i0,a,i0)') "ring(f90) rank ", rank, ": member to blame: ", failed_member
  end if
  if (s == VKV_OK) then
    s = vkv_group_descriptor(group, int(right, c_int32_t), remote, int(VKV_REMOTE_DESCRIPTOR_SIZE, c_size_t), got)
    if (s /= VKV_OK) call fail("vkv_group_descriptor")
  end if
  call agree()
  write(*, '(a,i0,a)') "ring(f90) rank ", rank, ": group formed; writing"
  flush(output_unit)

  s = vkv_group_write(group, int(right, c_int32_t), src_mem, 0_c_int64_t, bytes, remote, 0_c_int64_t, timeout_ms)
  if (s /= VKV_OK) then
    call fail("vkv_group_write")
    call MPI_Abort(MPI_COMM_WORLD, 10 + s, ierror)
  end if
  ! Every write has completed once all ranks are past the barrier.
  call MPI_Barrier(MPI_COMM_WORLD, ierror)

  bad = 0
  do i = 1, n
    if (inbox(i) /= int(left, c_int32_t) * 1000003_c_int32_t + int(i, c_int32_t) * 7_c_int32_t) bad = bad + 1
  end do
  if (bad == 0) then
    write(*, '(a,i0,a,i0,a,i0,a,i0,a)') "ring(f90) rank ", rank, ": wrote ", bytes, " bytes to rank ", right, &
      "; the ", n, " elements from its left neighbour verified"
    flush(output_unit)
  else
    write(*, '(a,i0,a,i0,a,i0)') "ring(f90) rank ", rank, ": FAIL: ", bad, " elements differ of ", n
    ok = 0
  end if
  call finish()

contains
  subroutine fail(what)
    character(len=*), intent(in) :: what
    write(*, '(a,i0,4a)') "ring(f90) rank ", rank, ": ", what, ": ", c_string(vkv_status_string(s)) // ": " // &
      c_string(vkv_last_error_message())
    ok = 0
  end subroutine

  ! Every rank calls it at the same points; when any rank failed, all finish.
  subroutine agree()
    call MPI_Allreduce(ok, all_ok, 1, MPI_INTEGER, MPI_MIN, MPI_COMM_WORLD, ierror)
    if (all_ok == 0) call finish()
  end subroutine

  subroutine finish()
    call MPI_Allreduce(ok, all_ok, 1, MPI_INTEGER, MPI_MIN, MPI_COMM_WORLD, ierror)
    if (c_associated(group)) s = vkv_group_close(group)
    if (c_associated(src_mem)) s = vkv_memory_close(src_mem)
    if (c_associated(inbox_mem)) s = vkv_memory_close(inbox_mem)
    if (c_associated(device)) s = vkv_device_close(device)
    if (rank == 0) then
      if (all_ok == 1) then
        write(*, '(a,i0,a)') "ring(f90): PASSED (", world_size, " ranks)"
      else
        write(*, '(a)') "ring(f90): FAILED"
      end if
    end if
    call MPI_Finalize(ierror)
    if (all_ok == 1) then
      stop 0
    else
      stop 1
    end if
  end subroutine
end program ring_f90
